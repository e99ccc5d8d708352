// Building the query the page streams: the user's query plus the quick filters, put into
// its selector, plus the text filter as a case-insensitive regex line filter.

/** A LogQL double-quoted string literal. */
export function quote(s) {
  return `"${String(s).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** A regex matching `text` literally. */
export function escapeRegex(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Where the query's leading selector is: `{open, close}` indexes of its braces, or null when
 * the query does not start with one. Quoted strings (with escapes) are skipped.
 */
export function findSelector(query) {
  const open = query.search(/\S/);
  if (open < 0 || query[open] !== '{') return null;
  let quoteChar = null;
  for (let i = open + 1; i < query.length; i += 1) {
    const c = query[i];
    if (quoteChar) {
      if (c === '\\' && quoteChar === '"') i += 1;
      else if (c === quoteChar) quoteChar = null;
    } else if (c === '"' || c === '`') {
      quoteChar = c;
    } else if (c === '}') {
      return { open, close: i };
    }
  }
  return null;
}

/**
 * The query with matchers added to its selector: `{a="1"} |= "x"` + {b: "2"} gives
 * `{a="1", b="2"} |= "x"`. A query without a selector gets one in front.
 */
export function withMatchers(query, matchers) {
  const extra = Object.entries(matchers)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${k}=${quote(v)}`);
  const q = (query || '').trim();
  if (!extra.length) return q || '{}';
  const sel = findSelector(q);
  if (!sel) return `{${extra.join(', ')}}${q ? ` ${q}` : ''}`;
  const inner = q.slice(sel.open + 1, sel.close).trim();
  const all = inner ? [inner, ...extra] : extra;
  return `${q.slice(0, sel.open)}{${all.join(', ')}}${q.slice(sel.close + 1)}`;
}

/** The whole query of the live view. */
export function buildQuery({ query, deployment, service, environment, level, text }) {
  let q = withMatchers(query, { deployment_id: deployment, service, environment, level });
  if (text) q += ` |~ ${quote(`(?i)${escapeRegex(text)}`)}`;
  return q;
}

/**
 * A regex that finds what a query looks for in lines, for highlighting: the text filter
 * (case-insensitively) and the query's `|= "…"` terms; null when there is nothing.
 */
export function highlighter(text, query = '') {
  const terms = text ? [escapeRegex(text)] : [];
  for (const m of query.matchAll(/\|=\s*("(?:[^"\\]|\\.)*")/g)) {
    try {
      const term = JSON.parse(m[1]);
      if (term) terms.push(escapeRegex(term));
    } catch { /* a LogQL escape JSON does not know: no highlight for it */ }
  }
  return terms.length ? new RegExp(terms.join('|'), 'gi') : null;
}

/**
 * What the text before the cursor is in the middle of, for completion:
 * `{kind: 'name', prefix, from}` after `{` or `,` inside the selector,
 * `{kind: 'value', label, prefix, from}` inside `name="…`, or null.
 * `from` is where the replaced word starts.
 */
export function completionContext(before) {
  const sel = findSelector(before);
  const open = before.search(/\S/);
  if (open < 0 || before[open] !== '{' || sel) return null; // not inside an open selector
  const value = /([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)$/.exec(before);
  if (value) {
    return { kind: 'value', label: value[1], prefix: value[3], from: before.length - value[3].length };
  }
  const name = /[{,]\s*([A-Za-z_][A-Za-z0-9_]*)?$/.exec(before);
  if (name) {
    const prefix = name[1] || '';
    return { kind: 'name', prefix, from: before.length - prefix.length };
  }
  return null;
}
