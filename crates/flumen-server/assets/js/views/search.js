// The search view (`/search`): a query over a time range, the histogram by level (drag to
// zoom), and the results newest first, a page at a time. The URL holds the query and the
// range: `/search?query=…&since=1h` or `&start=<ms>&end=<ms>`.

import * as api from '../api.js';
import { h } from '../dom.js';
import { field } from '../filters.js';
import { Histogram } from '../histogram.js';
import { QueryCombobox } from '../combobox.js';
import { highlighter } from '../query.js';
import { eventItem, rowRenderer } from '../row.js';
import { setStatus } from '../status.js';
import { fromLocalInput, toLocalInput } from '../time.js';
import { VirtualList } from '../virtual-list.js';

const RANGES = [
  ['5m', 'Last 5 minutes', 5 * 60e3],
  ['15m', 'Last 15 minutes', 15 * 60e3],
  ['1h', 'Last 1 hour', 3600e3],
  ['6h', 'Last 6 hours', 6 * 3600e3],
  ['24h', 'Last 24 hours', 24 * 3600e3],
  ['7d', 'Last 7 days', 7 * 86400e3],
  ['custom', 'Custom', null],
];
const DEFAULT_RANGE = '1h';
const PAGE = 100;
const BUCKETS = 60;

function stateFromUrl() {
  const p = new URLSearchParams(location.search);
  const start = Number(p.get('start'));
  const end = Number(p.get('end'));
  const custom = p.has('start') && p.has('end') && Number.isFinite(start) && Number.isFinite(end) && end > start;
  const since = RANGES.some(([v]) => v === p.get('since')) ? p.get('since') : DEFAULT_RANGE;
  return { query: p.get('query') || '', range: custom ? 'custom' : since, start, end };
}

/** Milliseconds from a `since` value, or null. */
const sinceMs = (range) => RANGES.find(([v]) => v === range)?.[2] ?? null;

export function mount(root) {
  const state = stateFromUrl();
  let running = null; // the AbortController of the search in flight
  let cursor = null;
  let shownQuery = '{}';
  let marks = null; // what to highlight in the results
  let shownBounds = [0, 0]; // what the results so far were asked for, for Load more

  const combo = new QueryCombobox({ value: state.query, onSubmit: () => run() });
  const range = h('select', { name: 'range' }, RANGES.map(([v, text]) => h('option', { value: v, text })));
  range.value = state.range;
  const from = h('input', { type: 'datetime-local', name: 'from', step: 1 });
  const to = h('input', { type: 'datetime-local', name: 'to', step: 1 });
  const fromField = field('From', from);
  const toField = field('To', to);
  const runBtn = h('button', { type: 'button', class: 'btn primary' }, 'Run');
  const alert = h('div', { class: 'alert', role: 'alert' });
  const histogram = new Histogram({ onSelect: (a, b) => setCustom(a, b, true) });
  const zoomOut = h('button', { type: 'button', class: 'btn small' }, 'Zoom out');
  histogram.head.append(zoomOut);

  const resultCount = h('span', { class: 'result-count', dataset: { testid: 'result-count' }, text: '0 events shown' });
  const note = h('span', { class: 'result-note' });
  const scroller = h('div', { class: 'lines results', role: 'list', 'aria-label': 'Results', tabindex: 0, dataset: { testid: 'results' } });
  const loadMore = h('button', { type: 'button', class: 'btn', hidden: true }, 'Load more');

  root.append(h('section', { class: 'view view-search', 'aria-label': 'Search' },
    h('div', { class: 'toolbar' },
      h('div', { class: 'query-row' }, combo.el, field('Range', range), fromField, toField, runBtn)),
    alert,
    histogram.el,
    h('div', { class: 'results-bar' }, resultCount, note),
    h('div', { class: 'lines-wrap' }, scroller),
    h('div', { class: 'results-foot' }, loadMore)));

  const list = new VirtualList(scroller, {
    renderRow: rowRenderer({ role: 'listitem', highlight: () => marks, query: () => shownQuery }),
    onRender: (l) => { resultCount.textContent = `${l.length} events shown`; },
  });

  /** The range in ms: the custom bounds, or the last N until now. */
  function bounds() {
    if (state.range === 'custom') return [state.start, state.end];
    const now = Date.now();
    return [now - sinceMs(state.range), now];
  }

  function showCustomInputs() {
    const custom = state.range === 'custom';
    fromField.hidden = !custom;
    toField.hidden = !custom;
    if (custom) {
      from.value = toLocalInput(state.start);
      to.value = toLocalInput(state.end);
    }
  }

  function setCustom(start, end, andRun) {
    state.range = 'custom';
    state.start = start;
    state.end = end;
    range.value = 'custom';
    showCustomInputs();
    if (andRun) run();
  }

  function writeUrl() {
    const p = new URLSearchParams();
    if (state.query) p.set('query', state.query);
    if (state.range === 'custom') {
      p.set('start', String(state.start));
      p.set('end', String(state.end));
    } else {
      p.set('since', state.range);
    }
    history.replaceState(history.state, '', `/search?${p}`);
  }

  async function run() {
    state.query = combo.value.trim();
    if (state.range === 'custom' && !(state.end > state.start)) {
      alert.textContent = 'The range needs a From before its To.';
      return;
    }
    writeUrl();
    running?.abort();
    const ctrl = new AbortController();
    running = ctrl;
    alert.textContent = '';
    const query = state.query || '{}';
    const [start, end] = bounds();
    shownQuery = query;
    marks = highlighter('', query);
    shownBounds = [start, end];
    list.clear();
    cursor = null;
    loadMore.hidden = true;
    note.textContent = 'Searching…';
    setStatus('', 'idle');
    const [histError] = await Promise.all([runHistogram(query, start, end, ctrl), runResults({ query, start, end }, ctrl)]);
    // The results' reason speaks of the user's query; the histogram's of the metric query
    // around it, so it is only shown when the results had nothing to say.
    if (histError && running === ctrl && !alert.textContent) alert.textContent = `Histogram: ${histError.message}`;
  }

  async function runHistogram(query, start, end, ctrl) {
    const stepS = Math.max(1, Math.ceil((end - start) / BUCKETS / 1000));
    try {
      const result = await api.queryRange({
        query: `sum by (level) (count_over_time(${query} [${stepS}s]))`,
        start: `${BigInt(Math.floor(start)) * 1000000n}`,
        end: `${BigInt(Math.ceil(end)) * 1000000n}`,
        step: `${stepS}s`,
      }, ctrl.signal);
      if (running === ctrl) histogram.set(result, start, end, stepS * 1000);
    } catch (err) {
      if (running === ctrl && err.name !== 'AbortError') {
        histogram.set([], start, end, stepS * 1000);
        return err;
      }
    }
    return null;
  }

  async function runResults(params, ctrl) {
    try {
      const { lines, summary } = await api.queryPage({ ...params, limit: PAGE, direction: 'backward', cursor }, ctrl.signal);
      if (running !== ctrl) return;
      list.pushAll(lines.map((raw) => eventItem(null, raw)));
      cursor = summary.next || null;
      loadMore.hidden = !cursor;
      note.textContent = summary.truncated ? `The search stopped early (${summary.truncated}); narrow the range or load more.` : '';
    } catch (err) {
      if (running === ctrl && err.name !== 'AbortError') {
        note.textContent = '';
        showError(err);
      }
    }
  }

  function showError(err) {
    alert.textContent = err.message;
  }

  async function more() {
    if (!cursor) return;
    const [start, end] = shownBounds;
    loadMore.disabled = true;
    // The same controller: a new search cancels a page still loading.
    await runResults({ query: shownQuery, start, end }, running);
    loadMore.disabled = false;
  }

  /** Twice the span, around the same middle, not past now. */
  function zoom() {
    const [start, end] = bounds();
    const span = end - start;
    let b = end + span / 2;
    let a = start - span / 2;
    const now = Date.now();
    if (b > now) { a -= b - now; b = now; }
    setCustom(Math.floor(a), Math.ceil(b), true);
  }

  range.addEventListener('change', () => {
    if (range.value === 'custom') {
      const [start, end] = bounds();
      setCustom(start, end, false);
    } else {
      state.range = range.value;
      showCustomInputs();
      run();
    }
  });
  for (const input of [from, to]) {
    input.addEventListener('change', () => {
      const a = fromLocalInput(from.value);
      const b = fromLocalInput(to.value);
      if (a !== null) state.start = a;
      if (b !== null) state.end = b;
    });
  }
  runBtn.addEventListener('click', () => run());
  loadMore.addEventListener('click', () => more());
  zoomOut.addEventListener('click', () => zoom());

  showCustomInputs();
  run();

  return {
    unmount() {
      running?.abort();
      histogram.destroy();
      list.destroy();
    },
    focusQuery: () => combo.focus(),
  };
}
