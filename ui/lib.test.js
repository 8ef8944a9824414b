// The UI's pure helpers: `node --test ui/lib.test.js` (scripts/test runs it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as lib from './lib.js';

test('URL state round-trips and leaves defaults out', () => {
  const state = { ...lib.DEFAULTS, q: 'status=5\\d\\d & x', regex: true, topic: 'web', from: '15m' };
  const search = lib.stateToSearch(state);
  assert.equal(search, '?q=status%3D5%5Cd%5Cd+%26+x&regex=1&topic=web&from=15m');
  assert.deepEqual(lib.parseState(search), state);
  assert.equal(lib.stateToSearch(lib.DEFAULTS), '');
  assert.deepEqual(lib.parseState(''), lib.DEFAULTS);
  assert.equal(lib.parseState('?i=true&tail=1').i, true);
  assert.equal(lib.parseState('?i=0').i, false);
  assert.equal(lib.hasState('?q=x'), true);
  assert.equal(lib.hasState('?other=1'), false);
});

test('NDJSON lines split across chunks, CRLF and a last line without newline', () => {
  const s = new lib.LineSplitter();
  assert.deepEqual(s.push('{"a":1}\n{"b"'), ['{"a":1}']);
  assert.deepEqual(s.push(':2}\r\n\n{"c":3}'), ['{"b":2}']);
  assert.deepEqual(s.end(), ['{"c":3}']);
  assert.deepEqual(s.end(), []);
});

test('literal highlights escape regex characters and honour case', () => {
  const re = lib.matcherRegExp('a.b', {});
  assert.deepEqual(lib.highlightRanges('a.b axb A.B a.b', re), [[0, 3], [12, 15]]);
  const ri = lib.matcherRegExp('a.b', { i: true });
  assert.deepEqual(lib.highlightRanges('A.B', ri), [[0, 3]]);
  assert.equal(lib.matcherRegExp('', {}), null);
  assert.deepEqual(lib.highlightRanges('x', null), []);
});

test('regex highlights skip empty matches and give up on invalid patterns', () => {
  const re = lib.matcherRegExp('5\\d\\d|x*', { regex: true });
  assert.deepEqual(lib.highlightRanges('GET 503 xx', re), [[4, 7], [8, 10]]);
  assert.equal(lib.matcherRegExp('(', { regex: true }), null);
  const many = lib.highlightRanges('a'.repeat(1000), lib.matcherRegExp('a', {}));
  assert.equal(many.length, lib.MAX_HIGHLIGHTS);
});

test('pieces cover the text exactly, marks where the ranges are', () => {
  const text = '<img src=x onerror=1> error here';
  const pieces = lib.splitByRanges(text, lib.highlightRanges(text, lib.matcherRegExp('error', {})));
  assert.equal(pieces.map((p) => p.text).join(''), text);
  assert.deepEqual(pieces.filter((p) => p.mark).map((p) => p.text), ['error', 'error']);
});

test('times parse like the server: now, durations ago, Unix ms, RFC 3339', () => {
  const now = 1_800_000_000_000;
  assert.equal(lib.parseTimeMs('now', now), now);
  assert.equal(lib.parseTimeMs('5m', now), now - 300_000);
  assert.equal(lib.parseTimeMs('1h30m', now), now - 5_400_000);
  assert.equal(lib.parseTimeMs('7d', now), now - 7 * 86_400_000);
  assert.equal(lib.parseTimeMs('1234', now), 1234);
  assert.equal(lib.parseTimeMs('2026-11-21T06:00:00Z', now), 1_795_240_800_000);
  assert.equal(lib.parseTimeMs('2026-11-21T06:00:00.250Z', now), 1_795_240_800_250);
  assert.equal(lib.parseTimeMs('yesterday-ish', now), null);
  assert.equal(lib.parseTimeMs('5 parsecs', now), null);
  assert.equal(lib.parseTimeMs('', now), null);
  assert.equal(lib.formatTime(1_795_240_800_000), '2026-11-21T06:00:00.000Z');
});

test('a ULID gives its time', () => {
  assert.equal(lib.ulidTimeMs('01M7YB1BR00000000000000007'), 1_795_240_800_000);
  assert.equal(lib.ulidTimeMs('0000000001XXXXXXXXXXXXXXXX'), 1);
  assert.equal(lib.ulidTimeMs('00000000Z0'), 31 * 32);
  assert.equal(lib.ulidTimeMs('!'), null);
});

test('buckets follow the contract: ceil step, the last ends at to', () => {
  const plan = lib.bucketPlan(1000, 1000 + 3_600_000, 60);
  assert.equal(plan.stepMs, 60_000);
  assert.equal(plan.n, 60);
  assert.equal(lib.bucketIndex(plan, 1000), 0);
  assert.equal(lib.bucketIndex(plan, 1000 + 59_999), 0);
  assert.equal(lib.bucketIndex(plan, 1000 + 60_000), 1);
  assert.equal(lib.bucketIndex(plan, 1000 + 3_600_000), 59);
  assert.equal(lib.bucketIndex(plan, 999), -1);
  assert.equal(lib.bucketIndex(plan, 1000 + 3_600_001), -1);
  const odd = lib.bucketPlan(0, 100, 30);
  assert.equal(odd.stepMs, 4);
  assert.equal(odd.n, 25);
  assert.equal(lib.bucketIndex(odd, 100), 24);
  const tiny = lib.bucketPlan(5, 5, 60);
  assert.equal(tiny.stepMs, 1);
  assert.equal(lib.bucketIndex(tiny, 5), 0);
  assert.deepEqual(lib.emptyCounts(lib.bucketPlan(0, 10, 5)), [0, 0, 0, 0, 0]);
});

test('a drag zooms to whole ms, in either direction, never empty', () => {
  assert.deepEqual(lib.zoomRange(2000.7, 1000.2), { from: 1000, to: 2001 });
  assert.deepEqual(lib.zoomRange(5, 5), { from: 5, to: 6 });
});

test('bytes, counts, the plan and the stats read well', () => {
  assert.equal(lib.formatBytes(0), '0 B');
  assert.equal(lib.formatBytes(999), '999 B');
  assert.equal(lib.formatBytes(1_200_000_000), '1.2 GB');
  assert.equal(lib.formatBytes(123_456_789), '123 MB');
  assert.equal(lib.formatCount(100000), '100,000');
  const headers = { 'x-sluice-bytes': '1200000000', 'x-sluice-segments': '14', 'x-sluice-nodes': '3' };
  assert.equal(lib.planText((n) => headers[n] ?? null), 'reading 1.2 GB in 14 segments on 3 nodes');
  assert.equal(
    lib.planText((n) => ({ 'x-sluice-segments': '1', 'x-sluice-nodes': '1' })[n] ?? null),
    'reading 0 B in 1 segment on 1 node',
  );
  assert.equal(
    lib.statsText({ records_matched: 1234, records_scanned: 5000, bytes_read: 2048 }, 100, 12),
    '1,234 matched · 100 shown · 5,000 scanned · 2.0 kB read · 12 ms',
  );
  assert.equal(lib.statsText(null, 3, 4), '3 shown · 4 ms');
});

test('an incomplete answer names its failed nodes', () => {
  assert.deepEqual(lib.failedNodes({ complete: true, nodes_failed: [] }), []);
  assert.deepEqual(lib.failedNodes(null), []);
  assert.deepEqual(
    lib.failedNodes({
      complete: false,
      nodes_failed: [{ node: 'n2', api: '10.0.0.2:7650', role: 'store', reason: 'timeout', detail: 'no frame in 10s' }],
    }),
    [{ node: 'n2', text: 'n2 (timeout: no frame in 10s)' }],
  );
  assert.deepEqual(lib.failedNodes({ complete: false }), [{ node: '?', text: '(unknown nodes)' }]);
  assert.deepEqual(lib.failedHeader('n1 (dead), n2 (unreachable: refused)'), [
    { node: 'n1', text: 'n1 (dead)' },
    { node: 'n2', text: 'n2 (unreachable: refused)' },
  ]);
  assert.deepEqual(lib.failedHeader(null), []);
});

test('stream lines are records, lagged markers or heartbeats', () => {
  assert.equal(lib.classifyLine({ id: '01', time: 't', topic: 'a', payload: 'x' }).kind, 'record');
  assert.deepEqual(lib.classifyLine({ lagged: 7 }), { kind: 'lagged', n: 7 });
  assert.equal(lib.classifyLine({ heartbeat: '2026-12-02T00:00:00.000Z' }).kind, 'heartbeat');
  assert.equal(lib.classifyLine(42).kind, 'other');
});

test('JSON payloads pretty-print, other text does not', () => {
  assert.equal(lib.prettyJson('{"a":1,"b":[2]}'), '{\n  "a": 1,\n  "b": [\n    2\n  ]\n}');
  assert.equal(lib.prettyJson('{not json'), null);
  assert.equal(lib.prettyJson('plain'), null);
});

test('the virtual list renders only what is visible, plus overscan', () => {
  assert.deepEqual(lib.visibleRange(0, 400, 20, 100_000, 5), { first: 0, end: 25 });
  assert.deepEqual(lib.visibleRange(20_000, 400, 20, 100_000, 5), { first: 995, end: 1025 });
  assert.deepEqual(lib.visibleRange(1_999_900, 400, 20, 100_000, 5), { first: 99_990, end: 100_000 });
  assert.deepEqual(lib.visibleRange(0, 400, 20, 0), { first: 0, end: 0 });
});

test('context keeps n records each side of the one asked about', () => {
  const records = ['01A', '01B', '01C', '01D', '01E', '01F'].map((id) => ({ id }));
  assert.deepEqual(lib.contextAround(records, '01C', 1).map((r) => r.id), ['01B', '01C', '01D']);
  assert.deepEqual(lib.contextAround(records.reverse(), '01A', 2).map((r) => r.id), ['01A', '01B', '01C']);
  assert.deepEqual(lib.contextAround(records, '01Z', 1).map((r) => r.id), ['01F']);
});
