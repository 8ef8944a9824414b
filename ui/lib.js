// @ts-check
// Pure helpers of the web UI: no DOM, no network, so `node --test
// ui/lib.test.js` covers them. app.js does the I/O.

/** The view's state, as kept in the URL. */
export const DEFAULTS = Object.freeze({
  q: '',
  regex: false,
  i: false,
  topic: '',
  from: '1h',
  to: 'now',
  tail: false,
});

const FLAGS = ['regex', 'i', 'tail'];
const TEXTS = ['q', 'topic', 'from', 'to'];

/**
 * The state a URL query string describes; missing keys take DEFAULTS.
 * @param {string} search e.g. `?q=error&regex=1`
 */
export function parseState(search) {
  const params = new URLSearchParams(search);
  /** @type {Record<string, string|boolean>} */
  const state = { ...DEFAULTS };
  for (const key of TEXTS) {
    const value = params.get(key);
    if (value !== null) state[key] = value;
  }
  for (const key of FLAGS) {
    const value = params.get(key);
    if (value !== null) state[key] = value === '1' || value === 'true';
  }
  return /** @type {typeof DEFAULTS} */ (state);
}

/**
 * The query string for `state`, defaults left out, in a stable order.
 * @param {Partial<typeof DEFAULTS>} state
 */
export function stateToSearch(state) {
  const params = new URLSearchParams();
  for (const key of ['q', 'regex', 'i', 'topic', 'from', 'to', 'tail']) {
    const value = state[key] ?? DEFAULTS[key];
    if (value === DEFAULTS[key]) continue;
    params.set(key, typeof value === 'boolean' ? (value ? '1' : '0') : String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** Whether a URL carries any view state (then the page runs it on load). */
export function hasState(search) {
  const params = new URLSearchParams(search);
  return [...TEXTS, ...FLAGS].some((k) => params.has(k));
}

/**
 * Splits a byte stream's text into lines, keeping the unfinished tail
 * for the next chunk (NDJSON).
 */
export class LineSplitter {
  constructor() {
    this.rest = '';
  }

  /**
   * @param {string} text the next decoded chunk
   * @returns {string[]} the lines it completes, without their `\n`
   */
  push(text) {
    const parts = (this.rest + text).split('\n');
    this.rest = parts.pop() ?? '';
    return parts.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l)).filter((l) => l !== '');
  }

  /** The last line, if the stream ended without a newline. */
  end() {
    const rest = this.rest;
    this.rest = '';
    return rest === '' ? [] : [rest];
  }
}

/** At most this many highlights per line: a pathological regex stays cheap. */
export const MAX_HIGHLIGHTS = 200;

/** @param {string} text */
export function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

/**
 * The matcher the server runs, as a JavaScript RegExp, for highlighting
 * only (the server decides what matches). `null` when there is nothing to
 * highlight or the pattern is not valid JavaScript.
 * @param {string} q
 * @param {{regex?: boolean, i?: boolean}} opts
 */
export function matcherRegExp(q, opts = {}) {
  if (!q) return null;
  const source = opts.regex ? q : escapeRegExp(q);
  const flags = `g${opts.i ? 'i' : ''}`;
  for (const extra of ['u', '']) {
    try {
      return new RegExp(source, flags + extra);
    } catch {
      // Rust regex syntax that JavaScript reads differently: try without
      // the unicode flag, then give up on highlighting.
    }
  }
  return null;
}

/**
 * Where `re` matches in `text`: sorted, non-overlapping `[start, end)`
 * pairs, empty matches skipped.
 * @param {string} text
 * @param {RegExp|null} re a global RegExp from matcherRegExp
 * @returns {Array<[number, number]>}
 */
export function highlightRanges(text, re) {
  /** @type {Array<[number, number]>} */
  const ranges = [];
  if (!re) return ranges;
  re.lastIndex = 0;
  let m;
  while ((m = re.exec(text)) !== null) {
    if (m[0].length === 0) {
      re.lastIndex += 1;
      if (re.lastIndex > text.length) break;
      continue;
    }
    ranges.push([m.index, m.index + m[0].length]);
    if (ranges.length >= MAX_HIGHLIGHTS) break;
  }
  return ranges;
}

/**
 * `text` cut into pieces, each marked or not: what the renderer turns
 * into text nodes and `<mark>` elements.
 * @param {string} text
 * @param {Array<[number, number]>} ranges from highlightRanges
 * @returns {Array<{text: string, mark: boolean}>}
 */
export function splitByRanges(text, ranges) {
  const pieces = [];
  let at = 0;
  for (const [start, end] of ranges) {
    if (start > at) pieces.push({ text: text.slice(at, start), mark: false });
    pieces.push({ text: text.slice(start, end), mark: true });
    at = end;
  }
  if (at < text.length) pieces.push({ text: text.slice(at), mark: false });
  return pieces;
}

// ---- time ----------------------------------------------------------------

const UNIT_MS = {
  ns: 1e-6, nsec: 1e-6, us: 1e-3, usec: 1e-3, ms: 1, msec: 1,
  s: 1e3, sec: 1e3, secs: 1e3, second: 1e3, seconds: 1e3,
  m: 6e4, min: 6e4, mins: 6e4, minute: 6e4, minutes: 6e4,
  h: 36e5, hr: 36e5, hrs: 36e5, hour: 36e5, hours: 36e5,
  d: 864e5, day: 864e5, days: 864e5,
  w: 6048e5, week: 6048e5, weeks: 6048e5,
  M: 2630016e3, month: 2630016e3, months: 2630016e3,
  y: 31557600e3, year: 31557600e3, years: 31557600e3,
};

/**
 * A duration as the server reads one (humantime: `5m`, `1h30m`, `7d`), in
 * ms, or null.
 * @param {string} text
 */
export function parseDurationMs(text) {
  const re = /\s*(\d+)\s*([a-zA-Z]+)/gy;
  let total = 0;
  let at = 0;
  let m;
  while ((m = re.exec(text)) !== null) {
    const unit = UNIT_MS[m[2]];
    if (unit === undefined) return null;
    total += Number(m[1]) * unit;
    at = re.lastIndex;
  }
  if (at === 0 || text.slice(at).trim() !== '') return null;
  return Math.round(total);
}

/**
 * A query time as the server reads it (`now`, a duration ago, Unix ms,
 * RFC 3339), in Unix ms, or null. The UI resolves times once per run, so
 * the plan, the results and the histogram cover the same range.
 * @param {string} text
 * @param {number} nowMs
 */
export function parseTimeMs(text, nowMs) {
  const value = String(text).trim();
  if (value === '') return null;
  if (value === 'now') return nowMs;
  if (/^\d+$/.test(value)) return Number(value);
  const ago = parseDurationMs(value);
  if (ago !== null) return Math.max(0, nowMs - ago);
  if (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(value)) {
    const ms = Date.parse(value.replace(' ', 'T'));
    if (!Number.isNaN(ms)) return ms;
  }
  return null;
}

/** RFC 3339 with milliseconds, UTC, as the server writes times. */
export function formatTime(ms) {
  return new Date(ms).toISOString();
}

/** The ms part of a ULID (its first 10 Crockford base32 characters). */
export function ulidTimeMs(id) {
  const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  let ms = 0;
  for (const c of String(id).slice(0, 10).toUpperCase()) {
    const v = alphabet.indexOf(c);
    if (v < 0) return null;
    ms = ms * 32 + v;
  }
  return ms;
}

/** The quick ranges offered beside the time inputs. */
export const QUICK_RANGES = ['5m', '15m', '1h', '6h', '1d', '7d'];

// ---- histogram -----------------------------------------------------------

/**
 * The histogram's buckets as the server cuts them: bucket k covers
 * `[fromMs + k*stepMs, fromMs + (k+1)*stepMs)`, the last one ends at toMs,
 * `stepMs = ceil((toMs - fromMs) / buckets)`, at least 1.
 * @param {number} fromMs
 * @param {number} toMs
 * @param {number} buckets
 */
export function bucketPlan(fromMs, toMs, buckets) {
  const stepMs = Math.max(1, Math.ceil((toMs - fromMs) / buckets));
  const n = Math.max(1, Math.ceil((toMs - fromMs) / stepMs));
  return { fromMs, toMs, stepMs, n };
}

/**
 * The bucket a time falls in, or -1 outside the range (`toMs` itself
 * counts in the last bucket).
 * @param {{fromMs: number, toMs: number, stepMs: number, n: number}} plan
 * @param {number} ms
 */
export function bucketIndex(plan, ms) {
  if (ms < plan.fromMs || ms > plan.toMs) return -1;
  return Math.min(plan.n - 1, Math.floor((ms - plan.fromMs) / plan.stepMs));
}

/** Zero counts for a plan. */
export function emptyCounts(plan) {
  return new Array(plan.n).fill(0);
}

/**
 * A range zoomed to what was dragged over, in whole ms, never empty.
 * @param {number} a one end, Unix ms
 * @param {number} b the other
 */
export function zoomRange(a, b) {
  const from = Math.floor(Math.min(a, b));
  const to = Math.ceil(Math.max(a, b));
  return { from, to: Math.max(to, from + 1) };
}

// ---- formatting ----------------------------------------------------------

/** Bytes in decimal units: `1.2 GB`. */
export function formatBytes(n) {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let value = Number(n) || 0;
  let u = 0;
  while (value >= 1000 && u < units.length - 1) {
    value /= 1000;
    u += 1;
  }
  const digits = u === 0 || value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${units[u]}`;
}

/** A count with thousands separators: `100,000`. */
export function formatCount(n) {
  return String(Math.round(Number(n) || 0)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

const plural = (n, one, many) => `${formatCount(n)} ${n === 1 ? one : many}`;

/**
 * The plan line from `HEAD /query`'s headers: "reading 1.2 GB in 14
 * segments on 3 nodes".
 * @param {(name: string) => string|null} header
 */
export function planText(header) {
  const num = (name) => Number(header(name) ?? 0) || 0;
  const bytes = num('x-sluice-bytes');
  const segments = num('x-sluice-segments');
  const nodes = num('x-sluice-nodes');
  return `reading ${formatBytes(bytes)} in ${plural(segments, 'segment', 'segments')} on ${plural(nodes, 'node', 'nodes')}`;
}

/**
 * The stats line after a run, from `GET /query?stats=true`.
 * @param {any} stats
 * @param {number} shown rows on screen
 * @param {number} elapsedMs as the page measured it
 */
export function statsText(stats, shown, elapsedMs) {
  const parts = [];
  if (stats && typeof stats.records_matched === 'number') {
    parts.push(`${formatCount(stats.records_matched)} matched`);
  }
  parts.push(`${formatCount(shown)} shown`);
  if (stats && typeof stats.records_scanned === 'number') {
    parts.push(`${formatCount(stats.records_scanned)} scanned`);
  }
  if (stats && typeof stats.bytes_read === 'number') {
    parts.push(`${formatBytes(stats.bytes_read)} read`);
  }
  parts.push(`${formatCount(elapsedMs)} ms`);
  return parts.join(' · ');
}

/**
 * The failed nodes of a cluster answer (`nodes_failed`), each as its node
 * and a text, or [] when the answer is complete.
 * @param {any} answer stats or histogram JSON
 * @returns {Array<{node: string, text: string}>}
 */
export function failedNodes(answer) {
  if (!answer || answer.complete !== false) return [];
  const failed = Array.isArray(answer.nodes_failed) ? answer.nodes_failed : [];
  if (failed.length === 0) return [{ node: '?', text: '(unknown nodes)' }];
  return failed.map((f) => {
    const node = String(f.node ?? f.api ?? '?');
    const why = [f.reason, f.detail].filter(Boolean).join(': ');
    return { node, text: why ? `${node} (${why})` : node };
  });
}

/**
 * The nodes an `X-Sluice-Nodes-Failed` header names: `id (reason), ...`.
 * @param {string|null} value
 * @returns {Array<{node: string, text: string}>}
 */
export function failedHeader(value) {
  if (!value) return [];
  return value
    .split(', ')
    .filter(Boolean)
    .map((text) => ({ node: text.split(' (')[0], text }));
}

// ---- stream lines ----------------------------------------------------------

/**
 * What one JSON line of `/query` or `/stream` is.
 * @param {any} obj
 * @returns {{kind: 'record', record: any} | {kind: 'lagged', n: number} |
 *   {kind: 'heartbeat', time: string} | {kind: 'other'}}
 */
export function classifyLine(obj) {
  if (obj && typeof obj === 'object') {
    if (typeof obj.id === 'string' && 'payload' in obj) return { kind: 'record', record: obj };
    if (typeof obj.lagged === 'number') return { kind: 'lagged', n: obj.lagged };
    if ('heartbeat' in obj) return { kind: 'heartbeat', time: String(obj.heartbeat) };
  }
  return { kind: 'other' };
}

/**
 * A payload pretty-printed when it is a JSON object or array, else null.
 * @param {string} payload
 */
export function prettyJson(payload) {
  const text = String(payload).trim();
  if (!(text.startsWith('{') || text.startsWith('['))) return null;
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return null;
  }
}

// ---- virtual list ------------------------------------------------------------

/**
 * Which rows of a fixed-height list to render: those visible plus
 * `overscan` on each side, as `[first, end)`.
 */
export function visibleRange(scrollTop, viewportHeight, rowHeight, count, overscan = 10) {
  if (count === 0 || rowHeight <= 0) return { first: 0, end: 0 };
  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
  const end = Math.min(count, Math.ceil((scrollTop + viewportHeight) / rowHeight) + overscan);
  return { first, end: Math.max(first, end) };
}

/**
 * The records around `id` in a context answer (same topic, a window of
 * time around it): up to `n` before and `n` after, in id order.
 * @param {Array<{id: string}>} records in id order
 */
export function contextAround(records, id, n) {
  const sorted = [...records].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  let at = sorted.findIndex((r) => r.id === id);
  if (at < 0) at = sorted.findIndex((r) => r.id > id);
  if (at < 0) at = sorted.length;
  return sorted.slice(Math.max(0, at - n), at + n + 1);
}
