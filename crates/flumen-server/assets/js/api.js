// The flumen HTTP API, as the page uses it. Errors are thrown as ApiError with the server's
// plain-text reason, which the views show to the user as is.

export class ApiError extends Error {
  constructor(status, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
  }
}

async function ensureOk(res) {
  if (res.ok) return res;
  let text = '';
  try { text = (await res.text()).trim(); } catch { /* the body is optional */ }
  throw new ApiError(res.status, text || `${res.status} ${res.statusText}`);
}

function url(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

async function getJson(path, params, signal) {
  const res = await ensureOk(await fetch(url(path, params), { signal, headers: { accept: 'application/json' } }));
  return res.json();
}

export const streamUrl = (params) => url('/api/v1/stream', params);

/**
 * One page of `/api/v1/query`: the event lines kept as raw JSON strings (rows parse them
 * when they are drawn) and the closing summary `{done, next, truncated, stats}`.
 */
export async function queryPage(params, signal) {
  const res = await ensureOk(await fetch(url('/api/v1/query', params), { signal }));
  const lines = (await res.text()).split('\n').filter((l) => l.length > 0);
  let summary = { done: true, next: null };
  if (lines.length && lines[lines.length - 1].startsWith('{"done"')) {
    summary = JSON.parse(lines.pop());
  }
  return { lines, summary };
}

/** Checks a query by asking for one event: resolves, or throws the 400's reason. */
export async function checkQuery(query, signal) {
  await queryPage({ query, limit: 1, since: '1m' }, signal);
}

export async function labels(signal) {
  return (await getJson('/api/v1/labels', {}, signal)).labels || [];
}

export async function labelValues(name, signal) {
  return (await getJson(`/api/v1/label/${encodeURIComponent(name)}/values`, {}, signal)).values || [];
}

/** Loki's `query_range` matrix: `[{metric, values: [[seconds, "count"], …]}]`. */
export async function queryRange(params, signal) {
  const body = await getJson('/loki/api/v1/query_range', params, signal);
  return body?.data?.result || [];
}

export async function deployments(params, signal) {
  return getJson('/api/v1/deployments', params, signal);
}

export async function deployment(id, signal) {
  return getJson(`/api/v1/deployments/${encodeURIComponent(id)}`, {}, signal);
}
