// The deployments list (`/deployments`): a table polled every 2 s, filtered by status,
// service and environment (kept in the URL). Rows are updated in place by id, so polling
// neither flickers nor loses the focus.

import * as api from '../api.js';
import { h } from '../dom.js';
import { field } from '../filters.js';
import { setStatus } from '../status.js';
import { dateTime, duration } from '../time.js';

const POLL_MS = 2000;
const PAGE = 50;
const STATUSES = ['running', 'succeeded', 'failed', 'cancelled'];
const COLUMNS = [
  ['ID', ''], ['Service', ''], ['Environment', 'col-env'], ['Version', 'col-version'], ['Status', ''],
  ['Started', 'col-started'], ['Duration', 'col-duration num'], ['Errors', 'num'],
];

/** A deployment's duration in ms: to its finish, or to now while it runs. */
export function deploymentDuration(d) {
  if (d.status === 'running') return Date.now() - Date.parse(d.started_at);
  if (d.finished_at) return Date.parse(d.finished_at) - Date.parse(d.started_at);
  return d.duration_ms ?? null;
}

export function statusBadge(status) {
  return h('span', { class: `status status-${status}`, text: String(status) });
}

export function mount(root) {
  const p = new URLSearchParams(location.search);
  const status = h('select', { name: 'status' },
    h('option', { value: '', text: 'All' }), STATUSES.map((s) => h('option', { value: s, text: s })));
  status.value = STATUSES.includes(p.get('status')) ? p.get('status') : '';
  const service = h('input', { type: 'search', name: 'service', placeholder: 'any', autocomplete: 'off' });
  service.value = p.get('service') || '';
  const environment = h('input', { type: 'search', name: 'environment', placeholder: 'any', autocomplete: 'off' });
  environment.value = p.get('environment') || '';
  const alert = h('div', { class: 'alert', role: 'alert' });
  const tbody = h('tbody');
  const empty = h('div', { class: 'empty-note', hidden: true });
  const more = h('button', { type: 'button', class: 'btn', hidden: true }, 'Load more');
  const rows = new Map(); // id → {tr, cells}
  let limit = PAGE;
  let timer = 0;
  let inFlight = null;
  let typing = 0;

  root.append(h('section', { class: 'view view-deployments', 'aria-label': 'Deployments' },
    h('div', { class: 'filters' }, field('Status', status), field('Service', service), field('Environment', environment)),
    alert,
    h('div', { class: 'table-wrap' },
      h('table', { 'aria-label': 'Deployments' },
        h('thead', {}, h('tr', {}, COLUMNS.map(([name, cls]) => h('th', { scope: 'col', class: cls }, name)))),
        tbody),
      empty),
    h('div', { class: 'results-foot' }, more)));

  function filters() {
    return { status: status.value, service: service.value.trim(), environment: environment.value.trim() };
  }

  function writeUrl() {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(filters())) if (v) q.set(k, v);
    const s = q.toString();
    history.replaceState(history.state, '', s ? `/deployments?${s}` : '/deployments');
  }

  async function poll() {
    clearTimeout(timer);
    inFlight?.abort();
    const ctrl = new AbortController();
    inFlight = ctrl;
    try {
      const { deployments, next_cursor: next } = await api.deployments({ ...filters(), limit }, ctrl.signal);
      render(deployments);
      more.hidden = !next;
      alert.textContent = '';
    } catch (err) {
      if (err.name === 'AbortError') return;
      alert.textContent = err.status === 503 ? `The deployments database is not available: ${err.message}` : err.message;
    }
    if (inFlight === ctrl) timer = setTimeout(poll, POLL_MS);
  }

  function render(list) {
    const seen = new Set();
    list.forEach((d, i) => {
      seen.add(d.id);
      let row = rows.get(d.id);
      if (!row) {
        row = makeRow(d);
        rows.set(d.id, row);
      }
      updateRow(row, d);
      if (tbody.children[i] !== row.tr) tbody.insertBefore(row.tr, tbody.children[i] || null);
    });
    for (const [id, row] of rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
    empty.hidden = list.length > 0;
    empty.textContent = Object.values(filters()).some(Boolean) ? 'No deployment matches these filters.' : 'No deployments yet.';
  }

  function makeRow(d) {
    const cells = COLUMNS.map(([, cls]) => h('td', { class: cls }));
    const link = h('a', { href: `/deployments/${encodeURIComponent(d.id)}`, text: d.id });
    cells[0].append(link);
    cells[0].classList.add('mono');
    const tr = h('tr', { dataset: { testid: 'deployment-row', id: d.id } }, cells);
    return { tr, cells };
  }

  function updateRow({ cells }, d) {
    const set = (i, text) => { if (cells[i].textContent !== text) cells[i].textContent = text; };
    set(1, d.service ?? '');
    set(2, d.environment ?? '');
    set(3, d.version ?? '');
    if (cells[4].textContent !== d.status) cells[4].replaceChildren(statusBadge(d.status));
    set(5, dateTime(d.started_at));
    set(6, duration(deploymentDuration(d)));
    const errors = d.events?.errors ?? 0;
    set(7, String(errors));
    cells[7].classList.toggle('has-errors', errors > 0);
  }

  const refilter = () => {
    writeUrl();
    limit = PAGE;
    poll();
  };
  status.addEventListener('change', refilter);
  for (const input of [service, environment]) {
    input.addEventListener('input', () => {
      clearTimeout(typing);
      typing = setTimeout(refilter, 250);
    });
  }
  more.addEventListener('click', () => {
    limit += PAGE;
    poll();
  });

  setStatus('', 'idle');
  poll();

  return {
    unmount() {
      clearTimeout(timer);
      clearTimeout(typing);
      inFlight?.abort();
      inFlight = null;
    },
  };
}
