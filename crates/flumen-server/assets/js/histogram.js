// The search view's histogram: events over time, stacked by level, from Loki's
// `query_range` matrix; a legend with the totals; drag across it to pick a time range.

import { h, svg } from './dom.js';
import { LEVEL_ORDER, levelKey } from './row.js';
import { axisLabel, clockMs } from './time.js';

const HEIGHT = 130;
const PAD = { left: 44, right: 6, top: 6, bottom: 18 };
const MIN_DRAG_PX = 4;

/** Sums a matrix into buckets: Map(bucket time ms → Map(level → count)), and totals. */
function bucketise(result) {
  const buckets = new Map();
  const totals = new Map();
  for (const series of result) {
    const level = series.metric?.level || 'unknown';
    for (const [seconds, count] of series.values || []) {
      const n = Number(count);
      if (!n) continue;
      const t = Math.round(Number(seconds) * 1000);
      if (!buckets.has(t)) buckets.set(t, new Map());
      const b = buckets.get(t);
      b.set(level, (b.get(level) || 0) + n);
      totals.set(level, (totals.get(level) || 0) + n);
    }
  }
  return { buckets, totals };
}

/** Levels worst first, then any others by name: the order of the stack and the legend. */
function orderLevels(levels) {
  const rank = (l) => LEVEL_ORDER.indexOf(levelKey(l));
  return [...levels].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

/** A round number of events at or above `max`, for the y axis. */
function niceMax(max) {
  if (max <= 5) return Math.max(1, max);
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

export class Histogram {
  /** @param {object} opts  onSelect(startMs, endMs) when a range is dragged across */
  constructor({ onSelect }) {
    this.onSelect = onSelect;
    this.data = null;
    this.svg = svg('svg', {
      class: 'histogram', role: 'img', 'aria-label': 'Events over time by level',
      'data-testid': 'histogram', height: HEIGHT,
    });
    this.total = h('span', { class: 'histogram-total', dataset: { testid: 'histogram-total' }, text: '0 events' });
    this.legend = h('ul', { class: 'legend', 'aria-label': 'Levels', dataset: { testid: 'histogram-legend' } });
    this.head = h('div', { class: 'histogram-head' }, this.total, this.legend);
    this.el = h('section', { class: 'histogram-panel', 'aria-label': 'Histogram' }, this.head, this.svg);
    this.brush = null;
    this.svg.addEventListener('pointerdown', (e) => this.onDown(e));
    this.svg.addEventListener('pointermove', (e) => this.onMove(e));
    this.svg.addEventListener('pointerup', (e) => this.onUp(e));
    this.svg.addEventListener('pointercancel', () => this.cancelBrush());
    this.resize = new ResizeObserver(() => this.draw());
    this.resize.observe(this.svg);
  }

  destroy() {
    this.resize.disconnect();
  }

  /** New data: the matrix for [startMs, endMs] in buckets of stepMs. */
  set(result, startMs, endMs, stepMs) {
    const { buckets, totals } = bucketise(result);
    this.data = { buckets, totals, startMs, endMs, stepMs, levels: orderLevels(totals.keys()) };
    this.drawLegend();
    this.draw();
  }

  drawLegend() {
    const { totals, levels } = this.data;
    let sum = 0;
    for (const n of totals.values()) sum += n;
    this.total.textContent = `${sum} events`;
    this.legend.replaceChildren(...levels.map((level) => h('li', {
      class: `lvl-${levelKey(level)}`, dataset: { testid: `legend-${level}` }, text: `${level} ${totals.get(level)}`,
    })));
  }

  /** The time scale: the plot spans from the first bucket's start to the range's end. */
  scale() {
    const { startMs, endMs, stepMs } = this.data;
    const t0 = startMs - stepMs;
    const plotW = Math.max(10, this.width - PAD.left - PAD.right);
    return {
      t0, t1: endMs,
      x: (t) => PAD.left + ((t - t0) / (endMs - t0)) * plotW,
      t: (x) => t0 + ((x - PAD.left) / plotW) * (endMs - t0),
    };
  }

  draw() {
    this.width = this.svg.clientWidth || 600;
    this.svg.setAttribute('viewBox', `0 0 ${this.width} ${HEIGHT}`);
    if (!this.data) { this.svg.replaceChildren(); return; }
    const { buckets, levels, stepMs } = this.data;
    const sc = this.scale();
    const plotH = HEIGHT - PAD.top - PAD.bottom;
    let max = 0;
    for (const b of buckets.values()) {
      let s = 0;
      for (const n of b.values()) s += n;
      max = Math.max(max, s);
    }
    const yMax = niceMax(max);
    const y = (n) => PAD.top + plotH - (n / yMax) * plotH;
    const parts = [];

    // Grid and y labels: 0, half, max.
    for (const v of [0, yMax / 2, yMax]) {
      parts.push(svg('line', { class: 'grid', x1: PAD.left, x2: this.width - PAD.right, y1: y(v), y2: y(v) }));
      parts.push(svg('text', { class: 'axis', x: PAD.left - 6, y: y(v) + 3.5, 'text-anchor': 'end' }, formatCount(v)));
    }
    // X labels: about one per 110 px.
    const ticks = Math.max(2, Math.floor(this.width / 110));
    const span = sc.t1 - sc.t0;
    for (let i = 0; i <= ticks; i += 1) {
      const t = sc.t0 + (span * i) / ticks;
      const anchor = i === 0 ? 'start' : i === ticks ? 'end' : 'middle';
      parts.push(svg('text', { class: 'axis', x: sc.x(t), y: HEIGHT - 4, 'text-anchor': anchor }, axisLabel(t, span)));
    }
    // Bars: each sample at t counts (t - step, t].
    const barW = Math.max(1, sc.x(stepMs) - sc.x(0) - 1);
    for (const [t, b] of buckets) {
      let acc = 0;
      const x = sc.x(t - stepMs) + 0.5;
      for (const level of levels) {
        const n = b.get(level);
        if (!n) continue;
        const top = y(acc + n);
        const rect = svg('rect', { class: `bar lvl-${levelKey(level)}`, x, y: top, width: barW, height: Math.max(0.5, y(acc) - top) },
          svg('title', {}, `${clockMs(t - stepMs).slice(0, 8)}–${clockMs(t).slice(0, 8)}  ${level}: ${n}`));
        parts.push(rect);
        acc += n;
      }
    }
    if (!buckets.size) {
      parts.push(svg('text', { class: 'empty', x: this.width / 2, y: HEIGHT / 2, 'text-anchor': 'middle' }, 'No events in this range'));
    }
    this.brushRect = svg('rect', { class: 'brush', x: 0, y: PAD.top, width: 0, height: plotH, visibility: 'hidden' });
    parts.push(this.brushRect);
    this.svg.replaceChildren(...parts);
  }

  // --- the brush ---------------------------------------------------------------------

  localX(e) {
    return e.clientX - this.svg.getBoundingClientRect().left;
  }

  onDown(e) {
    if (e.button !== 0 || !this.data) return;
    e.preventDefault();
    this.svg.setPointerCapture?.(e.pointerId);
    const x = this.localX(e);
    this.brush = { from: x, to: x };
    this.showBrush();
  }

  onMove(e) {
    if (!this.brush) return;
    this.brush.to = this.localX(e);
    this.showBrush();
  }

  onUp(e) {
    if (!this.brush) return;
    this.brush.to = this.localX(e);
    const { from, to } = this.brush;
    this.cancelBrush();
    if (Math.abs(to - from) < MIN_DRAG_PX) return;
    const sc = this.scale();
    const a = Math.max(sc.t0, sc.t(Math.min(from, to)));
    const b = Math.min(sc.t1, sc.t(Math.max(from, to)));
    if (b > a) this.onSelect(Math.floor(a), Math.ceil(b));
  }

  showBrush() {
    const { from, to } = this.brush;
    const lo = Math.max(PAD.left, Math.min(from, to));
    const hi = Math.min(this.width - PAD.right, Math.max(from, to));
    this.brushRect.setAttribute('x', lo);
    this.brushRect.setAttribute('width', Math.max(0, hi - lo));
    this.brushRect.setAttribute('visibility', 'visible');
  }

  cancelBrush() {
    this.brush = null;
    this.brushRect?.setAttribute('visibility', 'hidden');
  }
}

function formatCount(n) {
  if (n >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${+(n / 1e3).toFixed(1)}k`;
  return String(+n.toFixed(1));
}
