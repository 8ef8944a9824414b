// @ts-check
// The histogram's chart: uPlot bars over a histogram's buckets, in the
// page's colours; dragging over it picks a time range to zoom to. app.js
// owns the histogram and says when to draw; this module owns the chart.

/* global uPlot */

/** Steps of the count axis: whole numbers only. */
const COUNT_STEPS = [1, 2, 5].flatMap((m) => [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9].map((p) => m * p)).sort((a, b) => a - b);

/** @typedef {{plan: {fromMs: number, toMs: number, stepMs: number, n: number}, counts: number[], source: 'client'|'server', dirty: boolean}} Histogram */

/** @type {any} */
let chart = null;
/**
 * The histogram drawn last: the x scale's range is read from it.
 * @type {Histogram | null}
 */
let shown = null;

/** Whether uPlot loaded (its script is a separate file). */
export function available() {
  return typeof uPlot !== 'undefined';
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/** @param {HTMLElement} el */
function chartWidth(el) {
  return Math.max(200, el.clientWidth - 24);
}

/**
 * Draw `h` in `el`: new data for the chart there, or a new chart. Its
 * counts and plan also go to `el`'s data attributes, which tests read.
 * `onZoom(fromMs, toMs)` gets a range dragged over.
 * @param {HTMLElement} el
 * @param {Histogram} h
 * @param {(a: number, b: number) => void} onZoom
 */
export function draw(el, h, onZoom) {
  if (!available()) return;
  shown = h;
  el.dataset.counts = h.counts.join(',');
  el.dataset.fromMs = String(h.plan.fromMs);
  el.dataset.toMs = String(h.plan.toMs);
  el.dataset.stepMs = String(h.plan.stepMs);
  el.dataset.source = h.source;
  const xs = h.counts.map((_, k) => (h.plan.fromMs + k * h.plan.stepMs) / 1000);
  // Empty buckets draw no bar (null), not a line at zero.
  const data = [xs, h.counts.map((c) => c || null)];
  if (chart) {
    chart.setData(data);
    return;
  }
  const bar = cssVar('--bar');
  const axis = { stroke: cssVar('--muted'), grid: { stroke: cssVar('--line'), width: 1 }, ticks: { stroke: cssVar('--line'), width: 1 } };
  chart = new uPlot(
    {
      width: chartWidth(el),
      height: 120,
      legend: { show: false },
      cursor: { drag: { x: true, y: false, setScale: false }, points: { show: false } },
      scales: {
        x: { time: true, range: () => (shown ? [shown.plan.fromMs / 1000, shown.plan.toMs / 1000] : [0, 1]) },
        y: { range: (/** @type {any} */ _u, /** @type {number} */ _min, /** @type {number} */ max) => [0, Math.max(1, max || 0)] },
      },
      // Times in UTC, as the rows show them; counts in whole numbers.
      tzDate: (/** @type {number} */ ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
      axes: [axis, { ...axis, size: 50, incrs: COUNT_STEPS }],
      series: [
        {},
        {
          label: 'matches',
          stroke: bar,
          fill: bar,
          points: { show: false },
          paths: uPlot.paths.bars({ size: [0.9, Infinity], align: 1 }),
        },
      ],
      hooks: {
        setSelect: [
          (/** @type {any} */ u) => {
            if (u.select.width < 3) return;
            const a = u.posToVal(u.select.left, 'x') * 1000;
            const b = u.posToVal(u.select.left + u.select.width, 'x') * 1000;
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            onZoom(a, b);
          },
        ],
      },
    },
    data,
    el,
  );
}

/** Fit the chart, if there is one, to `el`'s width. @param {HTMLElement} el */
export function resize(el) {
  if (chart) chart.setSize({ width: chartWidth(el), height: 120 });
}

/** Remove the chart (a new one is made at the next draw). */
export function destroy() {
  if (chart) chart.destroy();
  chart = null;
  shown = null;
}
