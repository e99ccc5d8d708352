// The "Query" input: a combobox completing label names (after `{` or `,`) and label values
// (after `name="`), from the label endpoints; deployment ids come from the deployments API.

import * as api from './api.js';
import { h, uid } from './dom.js';
import { completionContext } from './query.js';

const MAX_OPTIONS = 50;
const CACHE_MS = 30000;

/** Label names and values, fetched on demand and kept for a while. */
class LabelSource {
  constructor() {
    this.cache = new Map(); // key → {at, promise}
  }

  get(key, load) {
    const hit = this.cache.get(key);
    if (hit && Date.now() - hit.at < CACHE_MS) return hit.promise;
    const promise = load().catch(() => []);
    this.cache.set(key, { at: Date.now(), promise });
    return promise;
  }

  names() {
    return this.get('', async () => [...new Set([...(await api.labels()), 'deployment_id'])].sort());
  }

  values(name) {
    if (name === 'deployment_id') {
      return this.get('=deployment_id', async () => (await api.deployments({ limit: 100 })).deployments.map((d) => d.id));
    }
    return this.get(`=${name}`, () => api.labelValues(name));
  }
}

const labelSource = new LabelSource();

/** Candidates first by prefix, then by substring, case-insensitively. */
function rank(words, prefix) {
  const p = prefix.toLowerCase();
  const starts = [];
  const contains = [];
  for (const w of words) {
    const lw = String(w).toLowerCase();
    if (lw.startsWith(p)) starts.push(w);
    else if (p && lw.includes(p)) contains.push(w);
  }
  return [...starts, ...contains].slice(0, MAX_OPTIONS);
}

export class QueryCombobox {
  /** @param {object} opts  value; placeholder; onSubmit(value) on Enter with the list closed */
  constructor({ value = '', placeholder = '{service="api"} |= "error"', onSubmit }) {
    this.onSubmit = onSubmit;
    this.options = [];
    this.active = -1;
    this.context = null;
    this.request = 0;

    const listId = uid('query-options');
    this.input = h('input', {
      type: 'text', class: 'query-input', role: 'combobox', 'aria-label': 'Query',
      'aria-autocomplete': 'list', 'aria-expanded': 'false', 'aria-controls': listId,
      autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', placeholder,
    });
    this.input.value = value;
    this.listbox = h('ul', { id: listId, role: 'listbox', class: 'completions', 'aria-label': 'Completions', hidden: true });
    this.el = h('div', { class: 'combo' }, this.input, this.listbox);

    this.input.addEventListener('input', () => this.update());
    this.input.addEventListener('click', () => this.update());
    this.input.addEventListener('keydown', (e) => this.onKey(e));
    this.input.addEventListener('blur', () => this.close());
    // Keep the focus in the input while an option is clicked.
    this.listbox.addEventListener('mousedown', (e) => e.preventDefault());
    this.listbox.addEventListener('click', (e) => {
      const li = e.target.closest('[role="option"]');
      if (li) this.accept(Number(li.dataset.index));
    });
  }

  get value() { return this.input.value; }
  set value(v) { this.input.value = v; }

  get isOpen() { return !this.listbox.hidden; }

  onKey(e) {
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      if (!this.isOpen) { this.update(); return; }
      const n = this.options.length;
      this.setActive((this.active + (e.key === 'ArrowDown' ? 1 : -1) + n) % n);
    } else if ((e.key === 'Enter' || e.key === 'Tab') && this.isOpen && this.active >= 0) {
      e.preventDefault();
      this.accept(this.active);
    } else if (e.key === 'Enter') {
      e.preventDefault();
      this.close();
      this.onSubmit?.(this.input.value);
    } else if (e.key === 'Escape' && this.isOpen) {
      e.preventDefault();
      e.stopPropagation(); // the first Escape closes the list, the next one leaves the input
      this.close();
    }
  }

  /** Looks at the text before the cursor and offers what fits there. */
  async update() {
    const before = this.input.value.slice(0, this.input.selectionStart ?? this.input.value.length);
    const ctx = completionContext(before);
    this.context = ctx;
    const request = ++this.request;
    if (!ctx) { this.close(); return; }
    const words = ctx.kind === 'name' ? await labelSource.names() : await labelSource.values(ctx.label);
    if (request !== this.request) return; // the user typed on meanwhile
    this.show(rank(words, ctx.prefix));
  }

  show(options) {
    this.options = options;
    if (!options.length || document.activeElement !== this.input) { this.close(); return; }
    this.listbox.replaceChildren(...options.map((text, i) => h('li', {
      role: 'option', id: `${this.listbox.id}-${i}`, 'aria-selected': 'false', dataset: { index: i }, text: String(text),
    })));
    this.listbox.hidden = false;
    this.input.setAttribute('aria-expanded', 'true');
    this.setActive(0);
  }

  setActive(i) {
    const prev = this.listbox.children[this.active];
    prev?.setAttribute('aria-selected', 'false');
    this.active = i;
    const li = this.listbox.children[i];
    if (!li) { this.input.removeAttribute('aria-activedescendant'); return; }
    li.setAttribute('aria-selected', 'true');
    this.input.setAttribute('aria-activedescendant', li.id);
    li.scrollIntoView({ block: 'nearest' });
  }

  close() {
    this.request += 1;
    this.listbox.hidden = true;
    this.active = -1;
    this.input.setAttribute('aria-expanded', 'false');
    this.input.removeAttribute('aria-activedescendant');
  }

  /** Puts option i in place of the word being typed: `name="` or `value"`. */
  accept(i) {
    const ctx = this.context;
    const word = this.options[i];
    if (!ctx || word === undefined) return;
    const text = this.input.value;
    const cursor = this.input.selectionStart ?? text.length;
    let rest = text.slice(cursor);
    let insert;
    if (ctx.kind === 'name') {
      rest = rest.replace(/^[A-Za-z0-9_]*/, '');
      insert = rest.startsWith('=') ? String(word) : `${word}="`;
    } else {
      const escaped = String(word).replace(/\\/g, '\\\\').replace(/"/g, '\\"');
      rest = rest.replace(/^(?:[^"\\]|\\.)*"?/, ''); // the rest of the old value, its quote
      insert = `${escaped}"`;
    }
    this.input.value = text.slice(0, ctx.from) + insert + rest;
    const at = ctx.from + insert.length;
    this.input.setSelectionRange(at, at);
    this.close();
    if (ctx.kind === 'name') this.update(); // go on with the values of that label
  }

  focus() {
    this.input.focus();
    this.input.select();
  }
}
