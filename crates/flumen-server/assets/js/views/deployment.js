// A deployment's page (`/deployments/<id>`): its summary, refreshed every 2 s while it runs,
// and its logs from its start, live, until the stream's `end` message.

import * as api from '../api.js';
import { h } from '../dom.js';
import { LogPanel } from '../log-panel.js';
import { LEVEL_ORDER, levelKey } from '../row.js';
import { setStatus } from '../status.js';
import { dateTime, duration } from '../time.js';
import { deploymentDuration, statusBadge } from './deployments.js';

const POLL_MS = 2000;

export function mount(root, { arg: id }) {
  let timer = 0;
  let ctrl = new AbortController();
  let panel = null;
  let ended = false;
  let last = null; // the last summary, for the banner

  const title = h('h1', { class: 'page-title' }, 'Deployment ', h('span', { class: 'mono', text: id }));
  const summary = h('dl', { class: 'summary', dataset: { testid: 'deployment-summary' } });
  const alert = h('div', { class: 'alert', role: 'alert' });
  const banner = h('div', { class: 'banner', role: 'status', hidden: true, dataset: { testid: 'deployment-end' } });
  const view = h('section', { class: 'view view-deployment', 'aria-label': 'Deployment' },
    h('a', { class: 'back', href: '/deployments' }, '← Deployments'),
    title, alert, summary, banner);
  root.append(view);

  async function refresh() {
    clearTimeout(timer);
    try {
      const d = await api.deployment(id, ctrl.signal);
      last = d;
      alert.textContent = '';
      renderSummary(d);
      if (!panel) startLogs();
      if (d.status === 'running' && !ended) timer = setTimeout(refresh, POLL_MS);
    } catch (err) {
      if (err.name === 'AbortError') return;
      if (err.status === 404) {
        notFound();
        return;
      }
      alert.textContent = err.message;
      timer = setTimeout(refresh, POLL_MS);
    }
  }

  function notFound() {
    view.replaceChildren(
      h('a', { class: 'back', href: '/deployments' }, '← Deployments'),
      h('p', { class: 'not-found', role: 'alert', text: `Deployment ${id} not found.` }));
    setStatus('', 'idle');
  }

  function renderSummary(d) {
    const ev = d.events || {};
    const byLevel = Object.entries(ev.by_level || {})
      .sort(([a], [b]) => LEVEL_ORDER.indexOf(levelKey(a)) - LEVEL_ORDER.indexOf(levelKey(b)));
    const item = (name, value, attrs = {}) => h('div', {}, h('dt', { text: name }), h('dd', attrs, value));
    const badge = statusBadge(d.status);
    badge.dataset.testid = 'deployment-status';
    summary.replaceChildren(
      item('ID', d.id, { class: 'mono' }),
      item('Status', badge),
      item('Service', d.service ?? '—'),
      item('Environment', d.environment ?? '—'),
      item('Version', d.version ?? '—'),
      item('Commit', d.commit ?? '—', { class: 'mono' }),
      item('Started by', d.started_by ?? '—'),
      item('Started', dateTime(d.started_at)),
      item('Finished', d.finished_at ? dateTime(d.finished_at) : '—'),
      item('Duration', duration(deploymentDuration(d))),
      item('Events', h('span', { dataset: { testid: 'deployment-events' }, text: String(ev.total ?? 0) })),
      item('Errors', String(ev.errors ?? 0), ev.errors ? { class: 'has-errors' } : {}),
      item('By level', byLevel.length
        ? byLevel.map(([l, n], i) => [i ? ' · ' : '', h('span', { class: `lvl-${levelKey(l)} by-level`, text: `${l} ${n}` })])
        : '—'),
      ...(d.message ? [item('Message', d.message)] : []),
    );
  }

  function startLogs() {
    panel = new LogPanel({
      highlight: () => null,
      query: () => `{deployment_id="${id}"}`,
      onEnd: (data) => onEnd(data),
      onError: (message) => { if (message) alert.textContent = message; },
    });
    view.append(panel.el);
    panel.attach();
    panel.start({ deployment: id });
  }

  /** The stream's `end`: the stream has closed itself; say how it ended, refresh once more. */
  function onEnd(data) {
    ended = true;
    const status = data?.status || last?.status || 'finished';
    const message = data?.message ?? last?.message;
    banner.textContent = `Deployment ${status}${message ? `: ${message}` : ''}`;
    banner.className = `banner status-${status}`;
    banner.hidden = false;
    setStatus('Ended', 'ended');
    clearTimeout(timer);
    refresh();
  }

  refresh();

  return {
    unmount() {
      clearTimeout(timer);
      ctrl.abort();
      ctrl = new AbortController();
      panel?.destroy();
    },
    onSpace: () => panel?.togglePause(),
  };
}
