// The connection status in the header (role="status"): the stream's state in words.

let el = null;

export function initStatus(element) {
  el = element;
}

/** Shows `text`; `kind` (live, paused, reconnecting, ended, error, idle) picks its colour. */
export function setStatus(text, kind = 'idle') {
  if (!el) return;
  if (el.textContent !== text) el.textContent = text;
  el.dataset.state = kind;
}
