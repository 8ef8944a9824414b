// @ts-check
// The sluice web UI: a query form, the plan, a histogram (uPlot), results
// streamed into a virtual list, live tail. Log text reaches the page only
// through textContent and text nodes; nothing here builds HTML from data.
import * as chart from './chart.js';
import * as lib from './lib.js';

/** Row height in px: the same as --row-h in app.css. */
const ROW_H = 20;
/** At most this many results per query (newest first when the server can). */
const LIMIT = 100_000;
/** Live tail keeps this many rows; older ones scroll away. */
const TAIL_MAX = 100_000;
const BUCKETS = 60;
/** Context: records of the same topic within this much of a record... */
const CONTEXT_MS = 5_000;
/** ...at most this many on each side. */
const CONTEXT_N = 10;
/** Characters of a payload drawn in a row (the detail shows all of it). */
const ROW_CHARS = 2_000;

/** What tests and curious users can read: CSP violations and script errors. */
const debug = { violations: /** @type {string[]} */ ([]), errors: /** @type {string[]} */ ([]) };
Object.defineProperty(window, '__sluice', { value: debug });
document.addEventListener('securitypolicyviolation', (e) => {
  debug.violations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
window.addEventListener('error', (e) => debug.errors.push(String(e.message)));

const byId = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const els = {
  form: /** @type {HTMLFormElement} */ (byId('query-form')),
  q: /** @type {HTMLInputElement} */ (byId('q')),
  regex: /** @type {HTMLInputElement} */ (byId('regex')),
  i: /** @type {HTMLInputElement} */ (byId('i')),
  topic: /** @type {HTMLInputElement} */ (byId('topic')),
  topics: byId('topics'),
  from: /** @type {HTMLInputElement} */ (byId('from')),
  to: /** @type {HTMLInputElement} */ (byId('to')),
  tail: /** @type {HTMLInputElement} */ (byId('tail')),
  cancel: byId('cancel'),
  plan: byId('plan'),
  status: byId('status'),
  stats: byId('stats'),
  lagged: byId('lagged'),
  heartbeat: byId('heartbeat'),
  incomplete: byId('incomplete'),
  histNote: byId('histogram-note'),
  histogram: byId('histogram'),
  results: byId('results'),
  spacer: byId('spacer'),
  newLines: byId('new-lines'),
  detail: byId('detail'),
  detailMeta: byId('detail-meta'),
  detailPayload: byId('detail-payload'),
  context: byId('context'),
  contextList: byId('context-list'),
  detailClose: byId('detail-close'),
};

// ---- view state ------------------------------------------------------------

/** @typedef {{id: string, time: string, topic: string, payload: string, truncated?: boolean}} Rec */

/** @type {Rec[]} */
let rows = [];
/** Bumped when rows move (cleared, or the oldest dropped in tail). */
let rowsVersion = 0;
let renderedKey = '';
/** @type {RegExp|null} */
let highlight = null;
/** @type {string|null} */
let selectedId = null;
/** The run in progress; a newer run makes every callback of an older one a no-op. */
let generation = 0;
/** @type {AbortController|null} */
let controller = null;
let tailing = false;
let following = true;
let missed = 0;
let lagged = 0;
/** The nodes that failed this run, by node: the latest text about each. */
/** @type {Map<string, string>} */
const failed = new Map();
/** @type {import('./chart.js').Histogram | null} */
let hist = null;

/** @param {'idle'|'planning'|'running'|'done'|'error'|'tailing'} state */
function setState(state) {
  document.body.dataset.state = state;
}

function setStatus(text) {
  els.status.textContent = text;
}

function readControls() {
  return {
    q: els.q.value,
    regex: els.regex.checked,
    i: els.i.checked,
    topic: els.topic.value.trim(),
    from: els.from.value.trim() || lib.DEFAULTS.from,
    to: els.to.value.trim() || lib.DEFAULTS.to,
    tail: els.tail.checked,
  };
}

/** @param {typeof lib.DEFAULTS} state */
function writeControls(state) {
  els.q.value = state.q;
  els.regex.checked = state.regex;
  els.i.checked = state.i;
  els.topic.value = state.topic;
  els.from.value = state.from;
  els.to.value = state.to;
  els.tail.checked = state.tail;
  markQuickRange();
}

function markQuickRange() {
  for (const button of document.querySelectorAll('[data-range]')) {
    const b = /** @type {HTMLElement} */ (button);
    b.classList.toggle('active', b.dataset.range === els.from.value && els.to.value === 'now');
  }
}

/** Put the controls' state in the URL, so a link reproduces the view. */
function saveUrl(state) {
  const search = lib.stateToSearch(state);
  if (search !== location.search) history.pushState(null, '', location.pathname + search);
}

/** The query parameters every request of a run shares (times resolved once). */
function baseParams(state, fromMs, toMs) {
  const p = new URLSearchParams();
  p.set('from', String(fromMs));
  p.set('to', String(toMs));
  if (state.q) p.set('q', state.q);
  if (state.regex) p.set('regex', 'true');
  if (state.i) p.set('i', 'true');
  if (state.topic) p.set('topic', state.topic);
  return p;
}

/** Begin a run from the controls. */
function run() {
  const state = readControls();
  saveUrl(state);
  markQuickRange();
  if (state.tail) startTail(state);
  else startQuery(state);
}

/** Stop whatever runs; its callbacks become no-ops. */
function stop() {
  generation += 1;
  if (controller) controller.abort();
  controller = null;
  tailing = false;
}

function cancelByUser() {
  const state = document.body.dataset.state;
  if (state === 'planning' || state === 'running' || state === 'tailing') {
    const wasTail = state === 'tailing';
    stop();
    flushRender();
    setStatus(`cancelled: ${lib.formatCount(rows.length)} shown`);
    setState('idle');
    if (wasTail) {
      els.tail.checked = false;
      saveUrl(readControls());
    }
  }
}

function clearResults() {
  rows = [];
  rowsVersion += 1;
  selectedId = null;
  missed = 0;
  lagged = 0;
  following = true;
  failed.clear();
  els.results.scrollTop = 0;
  els.plan.textContent = '';
  els.stats.textContent = '';
  els.heartbeat.textContent = '';
  els.histNote.textContent = '';
  els.lagged.hidden = true;
  els.newLines.hidden = true;
  els.detail.hidden = true;
  showFailed();
  scheduleRender();
}

/** @param {string} message */
function fail(message) {
  flushRender();
  setStatus(message);
  setState('error');
  controller = null;
}

/** @param {Array<{node: string, text: string}>} nodes */
function addFailed(nodes) {
  for (const { node, text } of nodes) failed.set(node, text);
  showFailed();
}

function showFailed() {
  els.incomplete.hidden = failed.size === 0;
  els.incomplete.textContent =
    failed.size === 0 ? '' : `incomplete result: failed nodes: ${[...failed.values()].join(', ')}`;
}

/** @param {Response} response */
function headerFailed(response) {
  addFailed(lib.failedHeader(response.headers.get('x-sluice-nodes-failed')));
}

/**
 * Read an NDJSON body line by line as it arrives.
 * @param {Response} response
 * @param {(obj: any) => void} onObject
 * @param {() => boolean} current whether this run is still the current one
 */
async function readNdjson(response, onObject, current) {
  if (!response.body) return;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const lines = new lib.LineSplitter();
  const handle = (/** @type {string[]} */ batch) => {
    for (const line of batch) {
      let obj;
      try {
        obj = JSON.parse(line);
      } catch {
        continue;
      }
      onObject(obj);
    }
  };
  for (;;) {
    const { done, value } = await reader.read();
    if (!current()) {
      reader.cancel().catch(() => {});
      return;
    }
    if (done) break;
    handle(lines.push(decoder.decode(value, { stream: true })));
  }
  handle(lines.push(decoder.decode()));
  handle(lines.end());
}

/** @param {unknown} e */
const aborted = (e) => e instanceof DOMException && e.name === 'AbortError';

/** A failed response's message, as the server wrote it. */
async function errorText(/** @type {Response} */ response) {
  const body = (await response.text().catch(() => '')).trim();
  return `${response.status} ${response.statusText}${body ? `: ${body}` : ''}`;
}

// ---- query -------------------------------------------------------------------

/** @param {ReturnType<typeof readControls>} state */
async function startQuery(state) {
  stop();
  const gen = generation;
  const current = () => gen === generation;
  const ctl = new AbortController();
  controller = ctl;
  const signal = ctl.signal;
  clearResults();
  highlight = lib.matcherRegExp(state.q, state);
  const now = Date.now();
  const fromMs = lib.parseTimeMs(state.from, now);
  const toMs = lib.parseTimeMs(state.to, now);
  if (fromMs === null || toMs === null) {
    const bad = fromMs === null ? `from ${JSON.stringify(state.from)}` : `to ${JSON.stringify(state.to)}`;
    fail(`cannot read ${bad}: use a duration ago (15m), an RFC 3339 time, Unix ms, or now`);
    return;
  }
  if (fromMs > toMs) {
    fail('empty time range: from is after to; swap them');
    return;
  }
  const base = baseParams(state, fromMs, toMs);
  const plan = lib.bucketPlan(fromMs, toMs, BUCKETS);
  hist = { plan, counts: lib.emptyCounts(plan), source: 'client', dirty: true };
  setState('planning');
  setStatus('planning…');
  try {
    const planned = await fetch(`/query?${base}`, { method: 'HEAD', signal });
    if (!current()) return;
    if (planned.ok) {
      els.plan.textContent = lib.planText((name) => planned.headers.get(name));
      headerFailed(planned);
    }
  } catch (e) {
    if (aborted(e) || !current()) return;
  }
  const histogramDone = fetchHistogram(base, current, signal);
  setState('running');
  setStatus('running…');
  const started = performance.now();
  let direction = 'backward';
  let order = '';
  try {
    let response = await fetch(`/query?${base}&format=json&direction=backward&limit=${LIMIT}`, { signal });
    if (response.status === 400) {
      // A server without direction=backward: oldest first instead.
      direction = 'forward';
      response = await fetch(`/query?${base}&format=json&limit=${LIMIT}`, { signal });
    }
    if (!current()) return;
    if (!response.ok) {
      fail(`the query failed: ${await errorText(response)}`);
      return;
    }
    headerFailed(response);
    await readNdjson(
      response,
      (obj) => {
        const line = lib.classifyLine(obj);
        if (line.kind !== 'record') return;
        const rec = line.record;
        if (direction === 'backward' && rows.length === 1 && rec.id > rows[0].id) {
          // The server ignored direction=backward: what comes is oldest first.
          direction = 'forward';
        }
        rows.push(rec);
        countInHistogram(rec);
        scheduleRender();
      },
      current,
    );
  } catch (e) {
    if (aborted(e) || !current()) return;
    fail(`the query failed: ${e}`);
    return;
  }
  if (!current()) return;
  const elapsed = Math.round(performance.now() - started);
  // The order is known from two records on.
  if (rows.length >= 2) order = direction === 'backward' ? ' (newest first)' : ' (oldest first)';
  if (rows.length >= LIMIT) order = `${order.slice(0, -1)}, the first ${lib.formatCount(LIMIT)})`;
  flushRender();
  setStatus(`${lib.formatCount(rows.length)} results${order}; counting…`);
  let stats = null;
  try {
    const limit = direction === 'backward' ? `&direction=backward&limit=${LIMIT}` : `&limit=${LIMIT}`;
    const response = await fetch(`/query?${base}&stats=true${limit}`, { signal });
    if (response.ok) stats = await response.json();
  } catch (e) {
    if (aborted(e)) return;
  }
  if (!current()) return;
  addFailed(lib.failedNodes(stats));
  els.stats.textContent = lib.statsText(stats, rows.length, elapsed);
  await histogramDone;
  if (!current()) return;
  setStatus(`${lib.formatCount(rows.length)} results${order}`);
  controller = null;
  flushRender();
  setState('done');
}

// ---- histogram -----------------------------------------------------------------

/**
 * Ask the server for the histogram; until it answers (or if it cannot),
 * the bars count the records streamed so far.
 */
async function fetchHistogram(base, current, signal) {
  try {
    const response = await fetch(`/histogram?${base}&buckets=${BUCKETS}`, { signal });
    if (!current() || !hist) return;
    if (!response.ok) {
      els.histNote.textContent =
        response.status === 404
          ? 'histogram: counted from the results shown (this server has no /histogram)'
          : `histogram failed: ${await errorText(response)}`;
      return;
    }
    const answer = await response.json();
    if (!current()) return;
    hist = {
      plan: { fromMs: answer.from_ms, toMs: answer.to_ms, stepMs: answer.step_ms, n: answer.buckets.length },
      counts: answer.buckets.map((/** @type {{count: number}} */ b) => b.count),
      source: 'server',
      dirty: true,
    };
    addFailed(lib.failedNodes(answer));
    drawHistogram();
  } catch (e) {
    if (!aborted(e) && current()) els.histNote.textContent = `histogram failed: ${e}`;
  }
}

/** @param {Rec} rec */
function countInHistogram(rec) {
  if (!hist || hist.source !== 'client') return;
  const k = lib.bucketIndex(hist.plan, Date.parse(rec.time));
  if (k >= 0) {
    hist.counts[k] += 1;
    hist.dirty = true;
  }
}

function drawHistogram() {
  if (!hist || !chart.available()) return;
  hist.dirty = false;
  chart.draw(els.histogram, hist, zoomTo);
}

/** Zoom to what was dragged over: absolute from/to, then run again. */
function zoomTo(a, b) {
  const { from, to } = lib.zoomRange(a, b);
  els.from.value = lib.formatTime(from);
  els.to.value = lib.formatTime(to);
  els.tail.checked = false;
  run();
}

function rebuildChart() {
  chart.destroy();
  drawHistogram();
}

// ---- results: a virtual list of fixed-height rows ----------------------------

let renderPending = false;

function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(flushRender);
  // A hidden page gets no animation frames: draw anyway, less often.
  setTimeout(flushRender, 250);
}

function flushRender() {
  renderPending = false;
  const n = rows.length;
  els.results.dataset.count = String(n);
  els.spacer.style.height = `${n * ROW_H}px`;
  if (tailing && following) els.results.scrollTop = els.results.scrollHeight;
  const { first, end } = lib.visibleRange(els.results.scrollTop, els.results.clientHeight, ROW_H, n, 10);
  const key = `${rowsVersion}:${first}:${end}:${selectedId}`;
  if (key !== renderedKey) {
    renderedKey = key;
    const fragment = document.createDocumentFragment();
    for (let k = first; k < end; k += 1) fragment.append(rowElement(rows[k], k));
    els.spacer.replaceChildren(fragment);
  }
  if (hist && hist.dirty) drawHistogram();
  if (document.body.dataset.state === 'running') setStatus(`running… ${lib.formatCount(n)} found`);
  els.newLines.hidden = missed === 0;
  els.newLines.textContent = `${lib.formatCount(missed)} new ${missed === 1 ? 'line' : 'lines'} ↓`;
}

/**
 * @param {HTMLElement} parent
 * @param {string} text
 */
function appendHighlighted(parent, text) {
  for (const piece of lib.splitByRanges(text, lib.highlightRanges(text, highlight))) {
    if (piece.mark) {
      const mark = document.createElement('mark');
      mark.textContent = piece.text;
      parent.append(mark);
    } else {
      parent.append(document.createTextNode(piece.text));
    }
  }
}

function span(className, text) {
  const s = document.createElement('span');
  s.className = className;
  s.textContent = text;
  return s;
}

/**
 * @param {Rec} rec
 * @param {number} index
 */
function rowElement(rec, index) {
  const div = document.createElement('div');
  div.className = `rec${index % 2 ? ' odd' : ''}${rec.id === selectedId ? ' selected' : ''}`;
  div.dataset.testid = 'row';
  div.dataset.index = String(index);
  div.dataset.id = rec.id;
  div.setAttribute('role', 'listitem');
  div.style.top = `${index * ROW_H}px`;
  div.append(span('t', rec.time), span('tp', rec.topic));
  const payload = span('p', '');
  payload.dataset.testid = 'payload';
  appendHighlighted(payload, rec.payload.length > ROW_CHARS ? rec.payload.slice(0, ROW_CHARS) : rec.payload);
  div.append(payload);
  return div;
}

function onScroll() {
  if (tailing) {
    const r = els.results;
    following = r.scrollTop + r.clientHeight >= r.scrollHeight - ROW_H;
    if (following) missed = 0;
  }
  flushRender();
}

// ---- detail and context ------------------------------------------------------

/** @param {Rec} rec */
function showDetail(rec) {
  selectedId = rec.id;
  els.detail.hidden = false;
  els.detail.dataset.id = rec.id;
  els.detailMeta.textContent = `${rec.time}  ${rec.topic}  ${rec.id}${rec.truncated ? '  (truncated)' : ''}`;
  els.detailPayload.textContent = lib.prettyJson(rec.payload) ?? rec.payload;
  els.contextList.replaceChildren();
  delete els.contextList.dataset.ready;
  flushRender();
}

/** The records around one on its topic: a few before and after it in time. */
async function loadContext(rec) {
  const t = Date.parse(rec.time);
  const common = { topic: rec.topic, format: 'json' };
  const before = new URLSearchParams({
    ...common,
    from: String(Math.max(0, t - CONTEXT_MS)),
    to: String(t),
    direction: 'backward',
    limit: String(CONTEXT_N + 1),
  });
  const after = new URLSearchParams({ ...common, from: String(t), to: String(t + CONTEXT_MS), after: rec.id, limit: String(CONTEXT_N) });
  els.contextList.replaceChildren(span('muted', 'loading context…'));
  /** @type {Map<string, Rec>} */
  const found = new Map([[rec.id, rec]]);
  try {
    for (const params of [before, after]) {
      let response = await fetch(`/query?${params}`);
      if (response.status === 400 && params.has('direction')) {
        params.delete('direction');
        params.set('limit', '1000');
        response = await fetch(`/query?${params}`);
      }
      if (!response.ok) throw new Error(await errorText(response));
      await readNdjson(
        response,
        (obj) => {
          const line = lib.classifyLine(obj);
          if (line.kind === 'record') found.set(line.record.id, line.record);
        },
        () => true,
      );
    }
  } catch (e) {
    els.contextList.replaceChildren(span('warn', `context failed: ${e}`));
    return;
  }
  if (selectedId !== rec.id) return;
  const lines = lib.contextAround([...found.values()], rec.id, CONTEXT_N).map((r) => {
    const div = document.createElement('div');
    div.className = `ctx${r.id === rec.id ? ' self' : ''}`;
    div.dataset.testid = 'context-row';
    div.dataset.id = r.id;
    div.append(span('t', `${r.time} `));
    appendHighlighted(div, r.payload);
    return div;
  });
  els.contextList.replaceChildren(...lines);
  els.contextList.dataset.ready = '1';
}

// ---- live tail -------------------------------------------------------------------

/** @param {ReturnType<typeof readControls>} state */
async function startTail(state) {
  stop();
  const gen = generation;
  const current = () => gen === generation;
  const ctl = new AbortController();
  controller = ctl;
  clearResults();
  chart.destroy();
  hist = null;
  tailing = true;
  highlight = lib.matcherRegExp(state.q, state);
  const params = new URLSearchParams({ format: 'json' });
  if (state.q) params.set('q', state.q);
  if (state.regex) params.set('regex', 'true');
  if (state.i) params.set('i', 'true');
  if (state.topic) params.set('topic', state.topic);
  setStatus('live tail: connecting…');
  let response;
  try {
    response = await fetch(`/stream?${params}`, { signal: ctl.signal });
  } catch (e) {
    if (!aborted(e) && current()) fail(`live tail failed: ${e}`);
    return;
  }
  if (!current()) return;
  if (response.status === 404) {
    fail('live tail needs GET /stream, which this server does not serve');
    tailing = false;
    return;
  }
  if (!response.ok) {
    fail(`live tail failed: ${await errorText(response)}`);
    tailing = false;
    return;
  }
  setState('tailing');
  setStatus('live tail: new records appear as they arrive');
  try {
    await readNdjson(
      response,
      (obj) => {
        const line = lib.classifyLine(obj);
        if (line.kind === 'record') {
          rows.push(line.record);
          if (!following) missed += 1;
          if (rows.length > TAIL_MAX) {
            rows.splice(0, rows.length - Math.floor(TAIL_MAX * 0.9));
            rowsVersion += 1;
          }
          scheduleRender();
        } else if (line.kind === 'lagged') {
          lagged += line.n;
          els.lagged.hidden = false;
          els.lagged.dataset.n = String(lagged);
          els.lagged.textContent = `lagged: ${lib.formatCount(lagged)} records dropped (this page fell behind)`;
        } else if (line.kind === 'heartbeat') {
          els.heartbeat.textContent = `alive ${line.time}`;
        }
      },
      current,
    );
  } catch (e) {
    if (aborted(e) || !current()) return;
    fail(`live tail failed: ${e}`);
    tailing = false;
    return;
  }
  if (!current()) return;
  tailing = false;
  fail('the live tail ended (the server closed it); toggle live to reconnect');
}

// ---- topics ------------------------------------------------------------------------

async function loadTopics() {
  const state = readControls();
  const now = Date.now();
  const from = lib.parseTimeMs(state.from, now) ?? now - 3_600_000;
  const to = lib.parseTimeMs(state.to, now) ?? now;
  try {
    const response = await fetch(`/topics?from=${from}&to=${to}`);
    // 404: a server without /topics; the topic box still takes any name.
    if (!response.ok) return;
    const answer = await response.json();
    const options = (answer.topics ?? []).map((/** @type {{topic: string, records: number}} */ t) => {
      const option = document.createElement('option');
      option.value = t.topic;
      option.textContent = `${t.topic} (${lib.formatCount(t.records)})`;
      return option;
    });
    els.topics.replaceChildren(...options);
  } catch {
    // No topics offered; typing one still works.
  }
}

// ---- wiring ----------------------------------------------------------------------------

function loadFromUrl() {
  const state = lib.parseState(location.search);
  writeControls(state);
  if (lib.hasState(location.search)) {
    if (state.tail) startTail(state);
    else startQuery(state);
  } else {
    stop();
    clearResults();
    setStatus('type a query and press Enter (an empty query shows everything in the range)');
    setState('idle');
  }
}

els.form.addEventListener('submit', (e) => {
  e.preventDefault();
  run();
});
els.cancel.addEventListener('click', cancelByUser);
els.tail.addEventListener('change', () => {
  if (els.tail.checked) {
    run();
  } else {
    cancelByUser();
    saveUrl(readControls());
  }
});
for (const button of document.querySelectorAll('[data-range]')) {
  button.addEventListener('click', () => {
    els.from.value = /** @type {HTMLElement} */ (button).dataset.range ?? lib.DEFAULTS.from;
    els.to.value = 'now';
    run();
  });
}
els.results.addEventListener('scroll', onScroll, { passive: true });
els.results.addEventListener('click', (e) => {
  const row = /** @type {HTMLElement|null} */ (/** @type {HTMLElement} */ (e.target).closest('[data-testid=row]'));
  if (!row) return;
  const rec = rows[Number(row.dataset.index)];
  if (rec) showDetail(rec);
});
els.newLines.addEventListener('click', () => {
  following = true;
  missed = 0;
  els.results.scrollTop = els.results.scrollHeight;
  flushRender();
});
els.detailClose.addEventListener('click', () => {
  els.detail.hidden = true;
  selectedId = null;
  flushRender();
});
els.context.addEventListener('click', () => {
  const rec = rows.find((r) => r.id === selectedId);
  if (rec) loadContext(rec);
});
document.addEventListener('keydown', (e) => {
  const target = /** @type {HTMLElement} */ (e.target);
  const typing = target instanceof HTMLInputElement && target.type !== 'checkbox';
  if (e.key === '/' && !typing && !e.ctrlKey && !e.metaKey && !e.altKey) {
    e.preventDefault();
    els.q.focus();
    els.q.select();
  } else if (e.key === 'Escape') {
    cancelByUser();
  }
});
window.addEventListener('popstate', loadFromUrl);
window.addEventListener('resize', () => {
  chart.resize(els.histogram);
  flushRender();
});
window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', rebuildChart);

loadFromUrl();
loadTopics();
els.q.focus();
