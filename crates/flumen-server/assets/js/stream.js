// A live stream of events over Server-Sent Events, which survives flumen restarts.
//
// Two ways back after a break: the browser's own EventSource retry (it sends Last-Event-ID
// itself), and, when the EventSource gave up (readyState CLOSED: the server was down and
// answered an error), a new EventSource with `after=<last position>`. Either way the stream
// drops any event at or before the last position it delivered, so nothing shows twice.

import { ApiError, streamUrl } from './api.js';
import { comparePositions, parsePosition } from './position.js';

const MAX_BACKOFF_MS = 5000;

export class LogStream {
  /**
   * @param {object} params  the stream's parameters: query, limit, deployment
   * @param {object} sink    callbacks: event(pos, raw), gap(data), end(data),
   *                         state('connecting'|'live'|'reconnecting'|'ended'|'error', detail)
   */
  constructor(params, sink) {
    this.params = params;
    this.sink = sink;
    this.es = null;
    this.lastPos = null; // string, as the server wrote it
    this.last = null; // [record, index]
    this.attempts = 0;
    this.retryTimer = 0;
    this.stopped = false;
    this.probe = null;
  }

  start() {
    this.sink.state('connecting');
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.probe?.abort();
    this.es?.close();
    this.es = null;
  }

  open() {
    const params = { ...this.params };
    if (this.lastPos) params.after = this.lastPos;
    const es = new EventSource(streamUrl(params));
    this.es = es;
    es.onopen = () => {
      this.attempts = 0;
      this.sink.state('live');
    };
    es.onmessage = (e) => this.onMessage(e);
    es.addEventListener('gap', (e) => this.sink.gap(safeParse(e.data)));
    es.addEventListener('close', () => this.sink.state('reconnecting'));
    es.addEventListener('end', (e) => this.onEnd(e));
    es.addEventListener('error', (e) => this.onError(es, e));
  }

  onMessage(e) {
    const pos = e.lastEventId;
    const parsed = parsePosition(pos);
    if (parsed) {
      if (this.last && comparePositions(parsed, this.last) <= 0) return; // seen already
      this.last = parsed;
      this.lastPos = pos;
    }
    this.sink.event(pos, e.data);
  }

  onEnd(e) {
    // The deployment finished and everything was sent: close, or the browser reconnects.
    this.stop();
    this.sink.state('ended');
    this.sink.end(safeParse(e.data));
  }

  onError(es, e) {
    if (this.stopped || es !== this.es) return;
    if (typeof e.data === 'string') {
      // The server's own `event: error`: it ends the response; the browser retries.
      this.sink.state('error', safeParse(e.data)?.error || e.data);
      return;
    }
    if (es.readyState === EventSource.CONNECTING) {
      this.sink.state('reconnecting');
      return;
    }
    // CLOSED: the browser gave up. Learn why (EventSource hides the answer), then retry.
    es.close();
    this.es = null;
    this.diagnose();
  }

  /** Asks the stream URL with fetch: a 400/404 is final and its text is shown; else retry. */
  async diagnose() {
    const params = { ...this.params, limit: 0 };
    if (this.lastPos) params.after = this.lastPos;
    const probe = new AbortController();
    this.probe = probe;
    try {
      const res = await fetch(streamUrl(params), { signal: probe.signal });
      if (res.status === 400 || res.status === 404) {
        const text = (await res.text()).trim();
        throw new ApiError(res.status, text);
      }
      probe.abort();
      if (res.ok) this.attempts = 0;
    } catch (err) {
      if (this.stopped) return;
      if (err instanceof ApiError) {
        this.sink.state('error', err.message);
        return;
      }
    }
    if (!this.stopped) this.retryLater();
  }

  retryLater() {
    this.sink.state('reconnecting');
    const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempts);
    this.attempts += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (!this.stopped) this.open();
    }, delay);
  }
}

function safeParse(text) {
  try { return JSON.parse(text); } catch { return null; }
}
