// Log positions ("19.3": record 19, event 3 in it). They only grow along a stream, so a
// stream can drop anything at or before the last one it showed.

/** [record, index] from "19.3", or null for anything else. */
export function parsePosition(s) {
  if (typeof s !== 'string') return null;
  const dot = s.indexOf('.');
  if (dot < 0) return null;
  const record = Number(s.slice(0, dot));
  const index = Number(s.slice(dot + 1));
  if (!Number.isFinite(record) || !Number.isFinite(index)) return null;
  return [record, index];
}

/** Negative, zero or positive, as a is before, at or after b. */
export function comparePositions(a, b) {
  return a[0] - b[0] || a[1] - b[1];
}
