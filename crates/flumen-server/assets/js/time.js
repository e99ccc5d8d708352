// Time formatting: local wall-clock times for lines, short durations for deployments.

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** `HH:MM:SS.mmm`, local time, from milliseconds since the epoch. */
export function clockMs(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** An event's time in milliseconds: from `time_ns` when present, else its RFC 3339 `time`. */
export function eventMs(ev) {
  if (typeof ev.time_ns === 'number') return Math.floor(ev.time_ns / 1e6);
  return Date.parse(ev.time);
}

/** `2026-12-04 13:57:03`, local, for tables and summaries. */
export function dateTime(value) {
  if (value === null || value === undefined || value === '') return '—';
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `1h 2m`, `1m 3s`, `4.2s`, `350ms`. */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 24) return `${hrs}h ${m % 60}m`;
  return `${Math.floor(hrs / 24)}d ${hrs % 24}h`;
}

/** The value of a `datetime-local` input for a time in ms, and back. */
export function toLocalInput(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
export function fromLocalInput(value) {
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? null : ms;
}

/** A short axis label for a time, finer when the span is short. */
export function axisLabel(ms, spanMs) {
  const d = new Date(ms);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (spanMs <= 10 * 60e3) return `${hm}:${pad(d.getSeconds())}`;
  if (spanMs <= 2 * 86400e3) return hm;
  return `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}`;
}
