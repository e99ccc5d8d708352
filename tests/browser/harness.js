'use strict';
// The browser tests' harness: a real `flumen serve` per test, Debian's Chromium driven by
// playwright-core, events sent with the npm `fluent-logger` client over the Forward protocol,
// deployments through the HTTP API, and bounded waits.
//
//   FLUMEN_BIN      the flumen binary (default <repo>/target/debug/flumen)
//   FLUMEN_PAGE_DIR passed through to flumen when set (serve the page's files from disk)
//   CHROMIUM        the browser (default /usr/bin/chromium); never downloaded
//   FLUMEN_KEEP     keep every test's temporary directory (kept anyway when a test fails)
//
// Everything listens on 127.0.0.1 only, and every wait has a deadline.

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const dgram = require('node:dgram');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { test, before, after } = require('node:test');

const logger = require('fluent-logger');
const { chromium } = require('playwright-core');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const FLUMEN_BIN = path.resolve(process.env.FLUMEN_BIN || path.join(REPO_ROOT, 'target', 'debug', 'flumen'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const READY_TIMEOUT_MS = 30000;
const STOP_TIMEOUT_MS = 20000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** `promise`, or `onTimeout` after `ms` (the timer does not keep the process alive). */
function within(promise, ms, onTimeout) {
  let timer;
  const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve(onTimeout), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------
// Bounded waiting.

function describe(value) {
  try {
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    return text === undefined ? String(value) : text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
  } catch {
    return String(value);
  }
}

/** Polls `fn` (sync or async) until it returns something truthy, which is returned. Throws
 * after `timeout` ms, naming `description` and the last value or error seen. */
async function waitFor(fn, timeout, description, interval = 100) {
  const deadline = Date.now() + timeout;
  let last;
  let lastError;
  for (;;) {
    try {
      last = await fn();
      lastError = undefined;
      if (last) return last;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() >= deadline) {
      const detail = lastError ? `last error: ${lastError.message}` : `last value: ${describe(last)}`;
      const what = typeof description === 'function' ? description() : description;
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (${detail})`);
    }
    await sleep(interval);
  }
}

/** Polls `fn` until it runs without throwing (an assertion, say): Playwright's `expect`
 * retried, for playwright-core that has none. Returns its value; after `timeout` ms rethrows
 * its last error, prefixed with `description`. */
async function eventually(fn, timeout, description, interval = 100) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() >= deadline) {
        const err = new Error(`${description}: still failing after ${timeout} ms: ${e.message}`);
        err.cause = e;
        throw err;
      }
    }
    await sleep(interval);
  }
}

// ---------------------------------------------------------------------------------------------
// Ports.

const handedOut = new Set();

function bindTcp(port) {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      const bound = server.address().port;
      server.close(() => resolve(bound));
    });
  });
}

function bindUdp(port) {
  return new Promise((resolve) => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', () => { socket.close(); resolve(false); });
    socket.bind({ address: '127.0.0.1', port, exclusive: true }, () => socket.close(() => resolve(true)));
  });
}

/** A port free on 127.0.0.1 for TCP and UDP (a forward source listens on both) right now, and
 * not handed out before by this process. */
async function freePort() {
  for (let i = 0; i < 200; i++) {
    const port = await bindTcp(0);
    if (handedOut.has(port)) continue;
    if (!(await bindUdp(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error('no free port found on 127.0.0.1');
}

// ---------------------------------------------------------------------------------------------
// flumen.

const running = new Set();
process.on('exit', () => {
  for (const child of running) {
    try { child.kill('SIGKILL'); } catch { /* gone */ }
  }
});

function tomlString(s) {
  return JSON.stringify(s);
}

class Flumen {
  constructor({ name = 'flumen', extraConfig = '' } = {}) {
    this.name = name;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `flumen-browser-${name.replace(/[^a-z0-9-]/gi, '_').slice(0, 40)}-`));
    this.dataDir = path.join(this.dir, 'data');
    this.configPath = path.join(this.dir, 'flumen.toml');
    this.stderrPath = path.join(this.dir, 'stderr.log');
    this.stdoutPath = path.join(this.dir, 'stdout.log');
    this.extraConfig = extraConfig;
    this.proc = null;
    this.exitCodes = [];
  }

  async writeConfig() {
    this.apiPort = await freePort();
    this.forwardPort = await freePort();
    this.api = `http://127.0.0.1:${this.apiPort}`;
    this.configText = `data_dir = ${tomlString(this.dataDir)}

[log]
persistence = "interval"
fsync_interval = "10ms"

[store]
flush_interval = "100ms"

[deployments]
database = "sqlite"

[api]
address = "127.0.0.1:${this.apiPort}"

[sources.fwd]
type = "forward"
address = "127.0.0.1:${this.forwardPort}"
${this.extraConfig}`;
    fs.writeFileSync(this.configPath, this.configText);
  }

  /** Spawns `flumen serve` and waits (bounded) for `GET /readyz` = 200. */
  async start(timeout = READY_TIMEOUT_MS) {
    assert.ok(fs.existsSync(FLUMEN_BIN), `flumen binary not found at ${FLUMEN_BIN} (set FLUMEN_BIN)`);
    assert.ok(!this.alive(), `flumen ${this.name} is running already`);
    if (!this.configText) await this.writeConfig();
    const err = fs.openSync(this.stderrPath, 'a');
    const out = fs.openSync(this.stdoutPath, 'a');
    // The environment is passed through as it is: FLUMEN_PAGE_DIR reaches flumen only when the
    // tests themselves run with it.
    const child = spawn(FLUMEN_BIN, ['serve', '--config', this.configPath], {
      cwd: this.dir,
      stdio: ['ignore', out, err],
      env: { ...process.env, RUST_BACKTRACE: '1' },
    });
    fs.closeSync(err);
    fs.closeSync(out);
    this.proc = child;
    running.add(child);
    child.exitCode_ = null;
    child.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      running.delete(child);
      child.exitCode_ = code === null ? `signal ${signal}` : code;
      resolve(child.exitCode_);
    }));
    let last = 'no answer yet';
    const deadline = Date.now() + timeout;
    while (Date.now() < deadline) {
      if (child.exitCode_ !== null) {
        throw new Error(`flumen ${this.name} exited (${child.exitCode_}) before becoming ready\n${this.stderrTail()}`);
      }
      try {
        const answer = await fetch(`${this.api}/readyz`, { signal: AbortSignal.timeout(1000) });
        if (answer.status === 200) return this;
        last = `HTTP ${answer.status}: ${(await answer.text()).slice(0, 200)}`;
      } catch (e) {
        last = String(e.cause || e);
      }
      await sleep(50);
    }
    throw new Error(`flumen ${this.name}: /readyz not 200 within ${timeout} ms (last: ${last})\n${this.stderrTail()}`);
  }

  alive() {
    return this.proc !== null && this.proc.exitCode_ === null;
  }

  /** SIGTERM, then waits (bounded) for the exit; returns the exit code. Kills it and throws
   * when it does not exit in time. */
  async stop(timeout = STOP_TIMEOUT_MS) {
    const child = this.proc;
    if (!child) return 0;
    if (child.exitCode_ === null) child.kill('SIGTERM');
    const code = await within(child.exited, timeout, 'timeout');
    this.proc = null;
    if (code === 'timeout') {
      child.kill('SIGKILL');
      await within(child.exited, 10000, null);
      throw new Error(`flumen ${this.name} did not exit within ${timeout} ms of SIGTERM\n${this.stderrTail()}`);
    }
    this.exitCodes.push(code);
    return code;
  }

  /** Stops it (SIGTERM) and starts it again on the same data directory and ports. */
  async restart() {
    const code = await this.stop();
    assert.equal(code, 0, `flumen ${this.name} exited with ${code} on SIGTERM\n${this.stderrTail()}`);
    await this.start();
    return this;
  }

  kill() {
    if (this.proc && this.proc.exitCode_ === null) this.proc.kill('SIGKILL');
    this.proc = null;
  }

  stderrText() {
    try { return fs.readFileSync(this.stderrPath, 'utf8'); } catch { return ''; }
  }

  stderrTail(lines = 80) {
    const all = this.stderrText().trimEnd().split('\n');
    const tail = all.slice(-lines).join('\n');
    return `--- flumen ${this.name} stderr (${this.stderrPath}), last ${Math.min(lines, all.length)} lines ---\n${tail}\n--- end ---`;
  }

  removeDir() {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  // -- HTTP ---------------------------------------------------------------------------------

  url(p) {
    return this.api + p;
  }

  async getJson(p) {
    const answer = await fetch(this.url(p), { signal: AbortSignal.timeout(10000) });
    const text = await answer.text();
    if (!answer.ok) throw new Error(`GET ${p}: HTTP ${answer.status}: ${text.slice(0, 300)}`);
    return JSON.parse(text);
  }

  async postJson(p, body, expectStatus) {
    const answer = await fetch(this.url(p), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10000),
    });
    const text = await answer.text();
    if (expectStatus ? answer.status !== expectStatus : !answer.ok) {
      throw new Error(`POST ${p}: HTTP ${answer.status}: ${text.slice(0, 300)}`);
    }
    return text ? JSON.parse(text) : null;
  }

  /** The search API's events of `query` (NDJSON), all pages; `direction` "forward" gives the
   * oldest first. */
  async query(query = '{}', { direction = 'backward', since = '24h', limit = 1000 } = {}) {
    const events = [];
    let cursor = null;
    for (let page = 0; page < 1000; page++) {
      const params = new URLSearchParams({ query, since, limit: String(limit), direction });
      if (cursor) params.set('cursor', cursor);
      const answer = await fetch(this.url(`/api/v1/query?${params}`), { signal: AbortSignal.timeout(20000) });
      const text = await answer.text();
      if (!answer.ok) throw new Error(`query ${query}: HTTP ${answer.status}: ${text.slice(0, 300)}`);
      let done = null;
      for (const line of text.split('\n')) {
        if (!line.trim()) continue;
        const obj = JSON.parse(line);
        if (obj.done) done = obj;
        else events.push(obj);
      }
      if (!done || !done.next) break;
      cursor = done.next;
    }
    return events;
  }

  /** Waits (bounded) until the store answers at least `count` events of `query`. */
  async waitStored(count, query = '{}', timeout = 20000) {
    return waitFor(async () => {
      const events = await this.query(query);
      return events.length >= count ? events : null;
    }, timeout, `${count} events of ${query} in the store`, 200);
  }

  async createDeployment(fields) {
    return this.postJson('/api/v1/deployments', fields, 201);
  }

  async finishDeployment(id, status, message) {
    const body = { status };
    if (message !== undefined) body.message = message;
    return this.postJson(`/api/v1/deployments/${encodeURIComponent(id)}/finish`, body, 200);
  }

  async deployment(id) {
    return this.getJson(`/api/v1/deployments/${encodeURIComponent(id)}`);
  }
}

/** Starts a flumen of its own (Forward source, API, SQLite deployments, store). */
async function startFlumen(options = {}) {
  const f = new Flumen(options);
  await f.start();
  return f;
}

// ---------------------------------------------------------------------------------------------
// Sending events with fluent-logger (the npm client), as an application would.

let nanoCounter = 0;

/** An EventTime for `ms` (Unix milliseconds), with distinct nanoseconds. */
function eventTime(ms = Date.now()) {
  nanoCounter = (nanoCounter + 1) % 1000000;
  const sec = Math.floor(ms / 1000);
  const nsec = (ms - sec * 1000) * 1000000 + nanoCounter;
  return new logger.EventTime(sec, nsec);
}

/** Sends `events` ({tag, record, time?: Unix ms}) on one connection, in order, each with an
 * acknowledgement (so each is durable in flumen when this resolves). Message mode keeps the
 * order across tags. Rejects on the first error or when acks do not arrive within `timeout`. */
function sendEvents(port, events, { mode = 'Message', timeout = 20000 } = {}) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const sender = logger.createFluentSender(null, {
      host: '127.0.0.1',
      port,
      timeout: 5.0,
      eventMode: mode,
      flushInterval: 10,
      requireAckResponse: true,
      ackResponseTimeout: timeout,
      enableReconnect: false,
      internalLogger: { info() {}, error() {} },
    });
    const finish = (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(watchdog);
      if (err) {
        try { sender.end(); } catch { /* closing */ }
        try { sender._disconnect && sender._disconnect(); } catch { /* closing */ }
        reject(err instanceof Error ? err : new Error(String(err)));
      } else {
        sender.end(null, null, () => resolve(events.length));
      }
    };
    const watchdog = setTimeout(() => finish(new Error(`no acks for ${events.length} events within ${timeout} ms`)), timeout);
    sender.on('error', (err) => finish(err));
    if (events.length === 0) { finish(); return; }
    let acked = 0;
    for (const ev of events) {
      sender.emit(ev.tag, ev.record, eventTime(ev.time), (err) => {
        if (err) { finish(err); return; }
        acked += 1;
        if (acked === events.length) finish();
      });
    }
  });
}

/** Sends one event, retrying (new connection each time) until acknowledged or `deadlineMs`
 * passes: for sending while flumen restarts. */
async function sendWithRetry(port, event, deadlineMs = 30000) {
  const deadline = Date.now() + deadlineMs;
  let lastError;
  while (Date.now() < deadline) {
    try {
      await sendEvents(port, [event], { timeout: 5000 });
      return;
    } catch (e) {
      lastError = e;
      await sleep(150);
    }
  }
  throw new Error(`could not send ${JSON.stringify(event.record)} within ${deadlineMs} ms: ${lastError}`);
}

/** A record like an application's: message, level, service, environment (+ extra fields). */
function record(message, { level = 'info', service = 'api', environment = 'prod', ...extra } = {}) {
  return { message, level, service, environment, ...extra };
}

/** An event of `service` with tag `app.<service>`. */
function appEvent(message, fields = {}) {
  const rec = record(message, fields);
  return { tag: `app.${rec.service}`, record: rec, time: fields.time };
}

// ---------------------------------------------------------------------------------------------
// The browser.

let browserPromise = null;

function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

function getBrowser() {
  if (!browserPromise) browserPromise = launchBrowser();
  return browserPromise;
}

async function closeBrowser() {
  if (!browserPromise) return;
  const b = await browserPromise.catch(() => null);
  browserPromise = null;
  if (b) await b.close().catch(() => {});
}

/** Registers the file's browser: launched before its first test, closed after its last. */
function useBrowser() {
  before(async () => { await getBrowser(); });
  after(async () => { await closeBrowser(); });
}

/** A test with a flumen and a browser page of its own:
 *   browserTest(name, { timeout, viewport, extraConfig, colorScheme }, async ({ f, page, context, log }) => …)
 * On failure it prints flumen's stderr, the page's console errors and a screenshot's path,
 * and keeps the temporary directory. */
function browserTest(name, options, body) {
  if (typeof options === 'function') { body = options; options = {}; }
  const { timeout = 60000, viewport = { width: 1280, height: 900 }, extraConfig = '', colorScheme = 'dark' } = options;
  test(name, { timeout }, async (t) => {
    const f = await startFlumen({ name, extraConfig });
    const browser = await getBrowser();
    const context = await browser.newContext({ viewport, colorScheme, reducedMotion: 'reduce' });
    context.setDefaultTimeout(10000);
    const page = await context.newPage();
    const console_ = [];
    page.on('console', (msg) => { if (msg.type() === 'error' || msg.type() === 'warning') console_.push(`[${msg.type()}] ${msg.text()}`); });
    page.on('pageerror', (err) => console_.push(`[pageerror] ${err.message}`));
    let failed = false;
    try {
      await body({ f, page, context, t, consoleMessages: console_ });
    } catch (e) {
      failed = true;
      const shot = path.join(f.dir, 'failure.png');
      await page.screenshot({ path: shot, fullPage: false, timeout: 5000 }).catch(() => {});
      let url = '';
      try { url = page.url(); } catch { /* closed */ }
      process.stderr.write(`\n=== ${name} failed ===\npage: ${url}\nscreenshot: ${shot}\n` +
        `page console (errors, warnings):\n${console_.slice(-40).join('\n') || '(none)'}\n${f.stderrTail()}\n`);
      throw e;
    } finally {
      await context.close().catch(() => {});
      let code;
      try {
        code = await f.stop();
      } catch (e) {
        if (!failed) throw e;
      }
      if (!failed && code !== 0 && code !== undefined) {
        failed = true;
        process.stderr.write(f.stderrTail());
        throw new Error(`flumen exited with ${code} on SIGTERM`);
      }
      if (!failed && !process.env.FLUMEN_KEEP) f.removeDir();
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Reading the page as a person sees it.

/** The rows (`data-testid="line"`) of the log list inside `root` (a CSS selector), in the
 * order they are shown (top to bottom), with their text, level and position. */
async function shownRows(page, root = '[data-testid="lines"]') {
  return page.evaluate((sel) => {
    const list = document.querySelector(sel);
    if (!list) return null;
    const rows = Array.from(list.querySelectorAll('[data-testid="line"]'));
    return rows
      .map((r) => {
        const box = r.getBoundingClientRect();
        return {
          text: r.innerText,
          level: r.getAttribute('data-level'),
          position: r.getAttribute('data-position'),
          top: box.top,
          height: box.height,
          marks: Array.from(r.querySelectorAll('mark')).map((m) => m.textContent),
        };
      })
      .filter((r) => r.height > 0)
      .sort((a, b) => a.top - b.top);
  }, root);
}

/** Every row of a virtualised list `root` (a CSS selector of its scrolling element), read by
 * scrolling it from the top to the bottom, in order, each once (by data-position). */
async function allRows(page, root) {
  const scroll = (to) => page.evaluate(async ([sel, top]) => {
    const el = document.querySelector(sel);
    if (!el) return null;
    if (top !== null) el.scrollTop = top;
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    return { top: el.scrollTop, view: el.clientHeight, height: el.scrollHeight };
  }, [root, to]);
  let at = await scroll(0);
  if (!at) return null;
  const out = [];
  const seen = new Set();
  for (let guard = 0; guard < 10000; guard++) {
    for (const r of (await shownRows(page, root)) || []) {
      const key = r.position || r.text;
      if (!seen.has(key)) { seen.add(key); out.push(r); }
    }
    if (at.top + at.view >= at.height - 1) break;
    const next = await scroll(at.top + Math.max(1, Math.floor(at.view * 0.7)));
    if (!next || next.top <= at.top) break;
    at = next;
  }
  return out;
}

/** The messages matching `re` (with one capture group, or the whole match) in the rows shown,
 * in order. */
async function shownMessages(page, re, root, { scroll = false } = {}) {
  const rows = (await (scroll ? allRows(page, root) : shownRows(page, root))) || [];
  const out = [];
  for (const r of rows) {
    const m = r.text.match(re);
    if (m) out.push(m[1] !== undefined ? m[1] : m[0]);
  }
  return out;
}

/** The first integer in a text ("1,234 lines" → 1234), or null. */
function firstNumber(text) {
  const m = (text || '').replace(/(\d)[,\u00a0\u202f ](?=\d{3}\b)/g, '$1').match(/\d+/);
  return m ? Number(m[0]) : null;
}

function searchParams(page) {
  return new URL(page.url()).searchParams;
}

/** Waits until the connection status reads `word` (e.g. "Live"). */
async function waitStatus(page, word, timeout = 15000) {
  const status = page.getByTestId('connection');
  let seen = '(no status element)';
  return waitFor(async () => {
    const text = (await status.textContent({ timeout: 1000 })) || '';
    seen = text;
    return text.includes(word) ? text : null;
  }, timeout, () => `the connection status to read "${word}" (it read "${seen}")`);
}

module.exports = {
  REPO_ROOT, FLUMEN_BIN, CHROMIUM, CHROMIUM_ARGS,
  sleep, waitFor, eventually, freePort,
  Flumen, startFlumen,
  sendEvents, sendWithRetry, record, appEvent, eventTime,
  launchBrowser, getBrowser, closeBrowser, useBrowser, browserTest,
  shownRows, allRows, shownMessages, firstNumber, searchParams, waitStatus,
};
