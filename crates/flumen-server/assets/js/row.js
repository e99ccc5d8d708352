// How one log line looks: the shared row of the live list, the search results and a
// deployment's logs. Collapsed it is one line of fixed height; expanded it shows the whole
// line, the record as a JSON tree and the Copy buttons. All event text goes in as text nodes.

import { copyText, h } from './dom.js';
import { clockMs, eventMs } from './time.js';

const LEVELS = {
  trace: 'trace', debug: 'debug', dbg: 'debug',
  info: 'info', information: 'info', notice: 'info',
  warn: 'warn', warning: 'warn',
  error: 'error', err: 'error',
  fatal: 'fatal', critical: 'fatal', crit: 'fatal', panic: 'fatal', alert: 'fatal', emerg: 'fatal',
};

/** The colour family of a level: trace, debug, info, warn, error, fatal or unknown. */
export function levelKey(level) {
  return LEVELS[String(level || '').toLowerCase()] || 'unknown';
}

/** The levels in the order bars stack and legends list them (worst first). */
export const LEVEL_ORDER = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'unknown'];

export const MARKER_TAG = 'flumen.deployment';
const COLLAPSED_CHARS = 2000; // a collapsed row shows one line; no need to lay out more

/** An item of a list, from an event's raw JSON (parsed when first drawn). */
export const eventItem = (pos, raw) => ({ kind: 'event', pos, raw, ev: null });
export const gapItem = (data) => ({ kind: 'gap', data });

function eventOf(item) {
  if (!item.ev) {
    try { item.ev = JSON.parse(item.raw); } catch { item.ev = { line: item.raw, record: {} }; }
    item.raw = null; // keep one copy only
  }
  return item.ev;
}

/**
 * The row renderer for a list.
 * @param {object} ctx  highlight(): RegExp|null for the text filter; query(): the query the
 *   rows came from (for Copy link); role: an ARIA role for rows (e.g. "listitem")
 */
export function rowRenderer(ctx) {
  return (item, expanded) => (item.kind === 'gap' ? gapRow(item, ctx) : eventRow(item, expanded, ctx));
}

/** Whether a row has anything to show expanded (a gap marker has not). */
export const isExpandable = (item) => item.kind !== 'gap';

function gapRow(item, ctx) {
  const d = item.data || {};
  const events = d.events_at_most === null || d.events_at_most === undefined
    ? 'an unknown number of events'
    : `at most ${d.events_at_most} events`;
  const text = `Gap: ${d.records ?? '?'} log records could not be sent (${events}), positions ${d.from ?? '?'} to ${d.to ?? '?'}`;
  return h('div', { class: 'row row-gap', role: ctx.role, tabindex: 0, dataset: { testid: 'gap' } },
    h('div', { class: 'row-main' }, h('span', { class: 'msg', text })));
}

function eventRow(item, expanded, ctx) {
  const ev = eventOf(item);
  const labels = ev.labels || {};
  const record = ev.record || {};
  const level = labels.level ?? record.level ?? '';
  const key = levelKey(level);
  const isMarker = ev.tag === MARKER_TAG;
  const ms = eventMs(ev);
  const service = labels.service ?? record.service;
  const deploymentId = record.deployment_id;
  const line = typeof ev.line === 'string' ? ev.line : JSON.stringify(record);

  const row = h('div', {
    class: `row lvl-${key}${isMarker ? ' row-marker' : ''}${expanded ? ' expanded' : ''}`,
    role: ctx.role,
    tabindex: 0,
    dataset: { testid: isMarker ? 'marker' : 'line', position: ev.position ?? item.pos ?? '', level: String(level) },
  });
  const main = h('div', { class: 'row-main' },
    h('time', { class: 't', datetime: ev.time || '' , text: Number.isFinite(ms) ? clockMs(ms) : '' }),
    h('span', { class: 'lvl', text: String(level || '—') }),
    h('span', { class: 'svc', text: service ? String(service) : '' }),
    deploymentId ? h('span', { class: 'dep', text: String(deploymentId) }) : null,
    h('span', { class: 'msg' }, highlighted(expanded ? line : line.slice(0, COLLAPSED_CHARS), ctx.highlight?.())),
  );
  row.append(main);
  if (expanded) row.append(details(ev, line, ms, ctx));
  return row;
}

/** Text with the matches of `re` wrapped in <mark>, as nodes. */
export function highlighted(text, re) {
  if (!re) return [text];
  const out = [];
  let at = 0;
  re.lastIndex = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m[0].length === 0) { re.lastIndex += 1; continue; }
    if (m.index > at) out.push(text.slice(at, m.index));
    out.push(h('mark', { text: m[0] }));
    at = m.index + m[0].length;
  }
  if (at < text.length) out.push(text.slice(at));
  return out;
}

function details(ev, line, ms, ctx) {
  const copied = h('span', { class: 'copied', 'aria-live': 'polite' });
  const say = (msg) => {
    copied.textContent = msg;
    setTimeout(() => { copied.textContent = ''; }, 1500);
  };
  const copyLine = h('button', { type: 'button', class: 'btn small' }, 'Copy line');
  copyLine.addEventListener('click', async () => say((await copyText(line)) ? 'Line copied' : 'Copy failed'));
  const copyLink = h('button', { type: 'button', class: 'btn small' }, 'Copy link');
  copyLink.addEventListener('click', async () => {
    say((await copyText(searchLink(ctx.query?.() || '{}', ms))) ? 'Link copied' : 'Copy failed');
  });
  return h('div', { class: 'row-details' },
    h('div', { class: 'row-actions' }, copyLine, copyLink, copied,
      h('span', { class: 'row-meta', text: `${ev.time || ''}  ·  ${ev.tag || ''}  ·  ${ev.position || ''}` })),
    h('pre', { class: 'row-full' }, highlighted(line, ctx.highlight?.())),
    jsonTree(ev.record ?? {}),
  );
}

/** A URL of the search view around an event: one minute either side. */
export function searchLink(query, ms) {
  const q = new URLSearchParams({ query, start: String(ms - 60000), end: String(ms + 60000) });
  return `${location.origin}/search?${q}`;
}

// --- the JSON tree: objects and arrays as <details>, so they fold without any script -----

export function jsonTree(value) {
  return h('div', { class: 'json-tree' }, isBranch(value) ? branchChildren(value, 0) : leaf(null, value));
}

const isBranch = (v) => v !== null && typeof v === 'object';

function branchChildren(value, depth) {
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
  return h('ul', { class: 'jt-list' }, entries.map(([k, v]) => h('li', {}, node(k, v, depth + 1))));
}

function node(key, value, depth) {
  if (!isBranch(value)) return leaf(key, value);
  const size = Array.isArray(value) ? `[${value.length}]` : `{${Object.keys(value).length}}`;
  return h('details', { class: 'jt-branch', open: depth < 3 },
    h('summary', {}, h('span', { class: 'jt-key', text: String(key) }), h('span', { class: 'jt-size', text: size })),
    branchChildren(value, depth));
}

function leaf(key, value) {
  const type = value === null ? 'null' : typeof value;
  const text = type === 'string' ? JSON.stringify(value) : String(value);
  return h('div', { class: 'jt-leaf' },
    key === null ? null : h('span', { class: 'jt-key', text: String(key) }),
    h('span', { class: `jt-val jt-${type}`, text }));
}
