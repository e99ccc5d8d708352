// Form controls shared by the views: labelled selects whose options come from the API.

import * as api from './api.js';
import { h } from './dom.js';

/** `<label><span>Name</span><control></label>`: the visible label names the control. */
export function field(name, control, cls = '') {
  return h('label', { class: `field ${cls}`.trim() }, h('span', { class: 'field-name', text: name }), control);
}

/**
 * A `<select>` with "All" (value "") first, then `options` ([value, text] pairs or values),
 * keeping `selected` even when the API does not know it (yet).
 */
export function fillSelect(select, options, selected = select.value) {
  if (document.activeElement === select) return; // never change an open select under the user
  const pairs = options.map((o) => (Array.isArray(o) ? o : [o, o]));
  if (selected && !pairs.some(([v]) => v === selected)) pairs.unshift([selected, selected]);
  select.replaceChildren(
    h('option', { value: '', text: 'All' }),
    ...pairs.map(([v, t]) => h('option', { value: v, text: t })),
  );
  select.value = selected || '';
}

/** Fills the quick filters: deployments (newest first) and label values. */
export async function loadQuickFilterOptions(selects) {
  const tasks = [];
  if (selects.deployment) {
    tasks.push(api.deployments({ limit: 50 }).then(({ deployments }) => fillSelect(
      selects.deployment,
      deployments.map((d) => [d.id, `${d.id} · ${d.service} ${d.version || ''} → ${d.environment} (${d.status})`]),
    )));
  }
  for (const name of ['service', 'environment', 'level']) {
    if (selects[name]) tasks.push(api.labelValues(name).then((values) => fillSelect(selects[name], values.sort())));
  }
  await Promise.allSettled(tasks);
}
