// The live view (`/`): the query, quick filters and text filter, and the streaming log list.
// Its state lives in the URL (`/?query=…&service=…&text=…`), replaced on each change.

import { h } from '../dom.js';
import { field, fillSelect, loadQuickFilterOptions } from '../filters.js';
import { LogPanel } from '../log-panel.js';
import { QueryCombobox } from '../combobox.js';
import { buildQuery, highlighter } from '../query.js';

const KEYS = ['query', 'deployment', 'service', 'environment', 'level', 'text'];
const BACKFILL = 1000; // lines shown from the store when the stream starts
const TEXT_DEBOUNCE_MS = 250;
const OPTIONS_REFRESH_MS = 15000;

function stateFromUrl() {
  const params = new URLSearchParams(location.search);
  return Object.fromEntries(KEYS.map((k) => [k, params.get(k) || '']));
}

function writeUrl(state) {
  const params = new URLSearchParams();
  for (const k of KEYS) if (state[k]) params.set(k, state[k]);
  const s = params.toString();
  history.replaceState(history.state, '', s ? `/?${s}` : '/');
}

export function mount(root) {
  const state = stateFromUrl();
  let streamed = ''; // the query being streamed
  let textRe = null;
  let textTimer = 0;

  const combo = new QueryCombobox({ value: state.query, onSubmit: () => apply() });
  const selects = {
    deployment: h('select', { name: 'deployment' }),
    service: h('select', { name: 'service' }),
    environment: h('select', { name: 'environment' }),
    level: h('select', { name: 'level' }),
  };
  for (const [k, sel] of Object.entries(selects)) {
    fillSelect(sel, [], state[k]);
    sel.addEventListener('change', () => apply());
  }
  const text = h('input', { type: 'search', name: 'text', placeholder: 'Filter text', autocomplete: 'off', spellcheck: 'false' });
  text.value = state.text;
  text.addEventListener('input', () => {
    clearTimeout(textTimer);
    textTimer = setTimeout(apply, TEXT_DEBOUNCE_MS);
  });
  text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { clearTimeout(textTimer); apply(); }
  });
  const applyBtn = h('button', { type: 'button', class: 'btn primary' }, 'Apply');
  applyBtn.addEventListener('click', () => apply());

  const alert = h('div', { class: 'alert', role: 'alert' });
  const panel = new LogPanel({
    highlight: () => textRe,
    query: () => streamed,
    onError: (message) => { alert.textContent = message || ''; },
  });

  root.append(h('section', { class: 'view view-live', 'aria-label': 'Live' },
    h('div', { class: 'toolbar' },
      h('div', { class: 'query-row' }, combo.el, applyBtn),
      h('div', { class: 'filters' },
        field('Deployment', selects.deployment, 'wide'),
        field('Service', selects.service),
        field('Environment', selects.environment),
        field('Level', selects.level),
        field('Text', text, 'grow'))),
    alert,
    panel.el));
  panel.attach();

  /** Reads the controls, writes the URL, and restarts the stream when the query changed. */
  function apply() {
    clearTimeout(textTimer);
    state.query = combo.value.trim();
    for (const k of Object.keys(selects)) state[k] = selects[k].value;
    state.text = text.value;
    writeUrl(state);
    const query = buildQuery(state);
    if (query === streamed) return;
    streamed = query;
    textRe = highlighter(state.text, state.query);
    panel.start({ query, limit: BACKFILL });
  }

  const refreshOptions = () => loadQuickFilterOptions(selects);
  refreshOptions();
  const optionsTimer = setInterval(refreshOptions, OPTIONS_REFRESH_MS);
  apply();

  return {
    unmount() {
      clearTimeout(textTimer);
      clearInterval(optionsTimer);
      panel.destroy();
    },
    onSpace: () => panel.togglePause(),
    focusQuery: () => combo.focus(),
  };
}
