'use strict';
// Measures the live view under load (not a test; run by hand):
//
//   FLUMEN_BIN=/path/to/flumen node tests/browser/measure.js [--load N] [--rate R] [--seconds S] [--marked M]
//
// 1. starts flumen and opens the live view (`/`, the default query `{}`) in headless Chromium;
// 2. loads N lines (default 100,000), sent as fast as fluent-logger (PackedForward) goes, and
//    waits until the page's count reads N;
// 3. sends R lines/s (default 2,000) for S seconds (default 20) while measuring in the page:
//    long tasks (PerformanceObserver 'longtask': count, total, max), frame times
//    (requestAnimationFrame: p50, p99, max, frames over 50 ms), the JS heap (CDP
//    Performance.getMetrics JSHeapUsedSize), the renderer's CPU (ProcessTime) and memory (the
//    largest renderer process's RSS and PSS from /proc), and the send→appear latency of M
//    marked lines (default 200): Date.now() just before the line is handed to the sender, to
//    the moment a row with its marker enters the DOM (a MutationObserver in the page,
//    performance.timeOrigin + performance.now(); same machine clock), p50 and p99;
// 4. prints a JSON summary, then a markdown table.
//
// FLUMEN_PAGE_DIR is passed through to flumen when set.

const fs = require('node:fs');
const logger = require('fluent-logger');
const { startFlumen, getBrowser, closeBrowser, waitFor, waitStatus, firstNumber, sleep, eventTime } = require('./harness');

function parseArgs(argv) {
  const args = { load: 100000, rate: 2000, seconds: 20, marked: 200 };
  for (let i = 2; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in args)) throw new Error(`unknown argument --${key} (known: ${Object.keys(args).join(', ')})`);
    args[key] = Number(argv[i + 1]);
  }
  return args;
}

const SERVICES = ['api', 'web', 'billing', 'checkout'];
const LEVELS = ['info', 'info', 'info', 'info', 'info', 'info', 'debug', 'warn', 'info', 'error'];

function quantile(sorted, q) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

const round = (x, d = 1) => (x === null || x === undefined ? null : Math.round(x * 10 ** d) / 10 ** d);

function sender(port) {
  const s = logger.createFluentSender(null, {
    host: '127.0.0.1',
    port,
    timeout: 10.0,
    eventMode: 'PackedForward',
    flushInterval: 5,
    requireAckResponse: false,
    enableReconnect: false,
    internalLogger: { info() {}, error: (...a) => console.error('fluent-logger:', ...a) },
  });
  s.on('error', (err) => { console.error('sender error:', err); process.exitCode = 1; });
  s.pending = 0;
  return s;
}

function emit(s, i, message) {
  const service = SERVICES[i % SERVICES.length];
  const level = LEVELS[i % LEVELS.length];
  s.pending += 1;
  s.emit(`app.${service}`, { message, level, service, environment: 'prod', n: i }, eventTime(), (err) => {
    s.pending -= 1;
    if (err) { console.error('emit error:', err); process.exitCode = 1; }
  });
}

/** Ends the sender once everything emitted is written (fluent-logger's end() alone drops
 * what is still queued). */
async function endSender(s) {
  await waitFor(() => s.pending === 0, 120000, () => `the sender to write its queue (${s.pending} left)`, 20);
  await new Promise((resolve) => s.end(null, null, resolve));
}

/** The renderer processes' memory (RSS, PSS in KiB) from /proc, largest first. */
async function rendererMemory(browser) {
  const session = await browser.newBrowserCDPSession();
  try {
    const { processInfo } = await session.send('SystemInfo.getProcessInfo');
    const out = [];
    for (const p of processInfo.filter((x) => x.type === 'renderer')) {
      try {
        const text = fs.readFileSync(`/proc/${p.id}/smaps_rollup`, 'utf8');
        const kib = (name) => Number((text.match(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm')) || [0, 0])[1]);
        out.push({ pid: p.id, rss_kib: kib('Rss'), pss_kib: kib('Pss') });
      } catch { /* gone, or not readable */ }
    }
    return out.sort((a, b) => b.rss_kib - a.rss_kib);
  } finally {
    await session.detach().catch(() => {});
  }
}

async function metrics(cdp) {
  const { metrics: list } = await cdp.send('Performance.getMetrics');
  return Object.fromEntries(list.map((m) => [m.name, m.value]));
}

// Runs in the page before its own scripts: long tasks and frame times from the start.
function pageInstrumentation() {
  const perf = { longtasks: [], frames: [], seen: {}, observing: false, entryTypes: PerformanceObserver.supportedEntryTypes };
  window.__measure = perf;
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) perf.longtasks.push([e.startTime, e.duration]);
    }).observe({ type: 'longtask', buffered: true });
  } catch (e) {
    perf.longtaskError = String(e);
  }
  let last = null;
  const frame = (t) => {
    if (last !== null) perf.frames.push([t, t - last]);
    last = t;
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}

// Runs in the page when the measured phase starts: record when each marked row enters the DOM.
function observeMarkers() {
  const perf = window.__measure;
  const list = document.querySelector('[data-testid="lines"]');
  if (!list) throw new Error('no [data-testid="lines"] in the page');
  // textContent runs the row's cells together ("…checkoutmk-00199 GET…"): no \b before it.
  const re = /mk-(\d{5})(?!\d)/g;
  const note = (text, at) => {
    if (!text || text.indexOf('mk-') < 0) return;
    re.lastIndex = 0;
    let m;
    while ((m = re.exec(text)) !== null) if (!(m[1] in perf.seen)) perf.seen[m[1]] = at;
  };
  const observer = new MutationObserver((records) => {
    const at = performance.timeOrigin + performance.now();
    for (const r of records) {
      if (r.type === 'characterData') note(r.target.data, at);
      else {
        for (const n of r.addedNodes) note(n.textContent, at);
        if (r.type === 'childList' && r.target.nodeType === 1 && r.addedNodes.length) note(r.target.textContent, at);
      }
    }
  });
  observer.observe(list, { childList: true, subtree: true, characterData: true });
  perf.observing = true;
  perf.phaseStart = performance.now();
  return performance.timeOrigin;
}

async function main() {
  const args = parseArgs(process.argv);
  const f = await startFlumen({ name: 'measure' });
  const browser = await getBrowser();
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'dark' });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.addInitScript(pageInstrumentation);
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable');
  const summary = { args, flumen_bin: process.env.FLUMEN_BIN || null, page_dir: process.env.FLUMEN_PAGE_DIR || null };
  try {
    await page.goto(f.url('/'));
    await waitStatus(page, 'Live', 20000);
    const count = async () => firstNumber(await page.getByTestId('count').textContent({ timeout: 2000 })) || 0;

    // --- 1. Load -----------------------------------------------------------------------------
    const before = await metrics(cdp);
    const loadStart = Date.now();
    {
      const s = sender(f.forwardPort);
      for (let i = 0; i < args.load; i++) {
        emit(s, i, `load-${String(i).padStart(6, '0')} GET /api/orders/${i % 977} 200 ${(i % 90) + 3}ms`);
        if (i % 2000 === 1999) await sleep(0); // let the socket drain
      }
      await endSender(s);
    }
    const sentAt = Date.now();
    let shownCount = 0;
    await waitFor(async () => {
      shownCount = await count();
      return shownCount >= args.load;
    }, 180000, () => `the count to reach ${args.load} (it read ${shownCount})`, 250);
    const loaded = Date.now();
    const afterLoad = await metrics(cdp);
    summary.load = {
      lines: args.load,
      send_s: round((sentAt - loadStart) / 1000, 2),
      shown_after_s: round((loaded - loadStart) / 1000, 2),
      renderer_cpu_s: round(afterLoad.ProcessTime - before.ProcessTime, 2),
      js_heap_used_mib: round(afterLoad.JSHeapUsedSize / 2 ** 20),
      dom_nodes: afterLoad.Nodes,
    };
    await sleep(1000); // settle
    // The view should be following the newest line (nobody scrolled); if it is not, say so and
    // click "Jump to latest", so that the live phase measures the following view.
    const jump = page.getByRole('button', { name: 'Jump to latest' });
    summary.load.jump_to_latest_visible = await jump.isVisible().catch(() => null);
    if (summary.load.jump_to_latest_visible) {
      await jump.click();
      await sleep(500);
    }

    // --- 2. Live at R lines/s, measured ----------------------------------------------------
    await page.evaluate(observeMarkers);
    const startMetrics = await metrics(cdp);
    const startPerf = await page.evaluate(() => performance.now());
    const total = args.rate * args.seconds;
    const markEvery = Math.max(1, Math.floor(total / args.marked));
    const marks = {};
    const s = sender(f.forwardPort);
    const t0 = Date.now();
    // Watch (once a second) whether the view still follows the newest line.
    const jumpSamples = [];
    const watcher = setInterval(() => {
      jump.isVisible().then((v) => jumpSamples.push([round((Date.now() - t0) / 1000), v]), () => {});
    }, 1000);
    let i = 0;
    while (i < total) {
      const due = Math.min(total, Math.floor(((Date.now() - t0) / 1000) * args.rate));
      for (; i < due; i++) {
        if (i % markEvery === markEvery - 1) {
          const id = String(i).padStart(5, '0');
          marks[id] = Date.now();
          emit(s, args.load + i, `mk-${id} GET /api/cart 200 ${i % 50}ms`);
        } else {
          emit(s, args.load + i, `live-${String(i).padStart(6, '0')} GET /api/search?q=${i % 313} 200 ${(i % 70) + 2}ms`);
        }
      }
      await sleep(5);
    }
    await endSender(s);
    clearInterval(watcher);
    const sendSeconds = (Date.now() - t0) / 1000;
    const endMetrics = await metrics(cdp);
    const endPerf = await page.evaluate(() => performance.now());
    // Wait (bounded) for the last lines to show.
    const expected = Math.min(args.load + total, 200000);
    await waitFor(async () => {
      shownCount = await count();
      return shownCount >= expected;
    }, 60000, () => `the count to reach ${expected} (it read ${shownCount})`, 250).catch((e) => { summary.count_error = e.message; });
    await sleep(500);
    const perf = await page.evaluate(([from, to]) => {
      const p = window.__measure;
      return {
        longtasks: p.longtasks.filter(([t]) => t >= from && t <= to),
        frames: p.frames.filter(([t]) => t >= from && t <= to).map(([, d]) => d),
        seen: p.seen,
        longtaskError: p.longtaskError || (p.entryTypes.includes('longtask') ? null : 'longtask not supported'),
      };
    }, [startPerf, endPerf]);
    const memory = await rendererMemory(browser);
    summary.diagnostics = {
      jump_to_latest_visible: await page.getByRole('button', { name: 'Jump to latest' }).isVisible().catch(() => null),
      status: await page.getByTestId('connection').textContent().catch(() => null),
      last_rows: await page.evaluate(() => Array.from(document.querySelectorAll('[data-testid="lines"] [data-testid="line"]')).slice(-3).map((r) => r.textContent.slice(0, 80))),
      marked_seen_ids: Object.keys(perf.seen).slice(0, 5),
      // [seconds into the live phase, "Jump to latest" visible]: visible = the view stopped
      // following the newest line although nobody scrolled.
      following_lost_at_s: (jumpSamples.find(([, v]) => v) || [null])[0],
      jump_samples: jumpSamples.length,
    };

    const latencies = Object.entries(marks)
      .filter(([id]) => id in perf.seen)
      .map(([id, at]) => perf.seen[id] - at)
      .sort((a, b) => a - b);
    const frames = perf.frames.slice().sort((a, b) => a - b);
    const lt = perf.longtasks.map(([, d]) => d);
    const seconds = (endPerf - startPerf) / 1000;
    summary.live = {
      rate_per_s: args.rate,
      seconds: args.seconds,
      sent: total,
      actual_send_s: round(sendSeconds, 2),
      count_at_end: shownCount,
      longtasks: {
        count: lt.length,
        total_ms: round(lt.reduce((a, b) => a + b, 0)),
        max_ms: round(lt.length ? Math.max(...lt) : 0),
        share_of_time: round(lt.reduce((a, b) => a + b, 0) / (seconds * 1000), 3),
        observer_error: perf.longtaskError,
      },
      frames: {
        count: frames.length,
        per_s: round(frames.length / seconds),
        p50_ms: round(quantile(frames, 0.5)),
        p99_ms: round(quantile(frames, 0.99)),
        max_ms: round(frames.length ? frames[frames.length - 1] : null),
        over_50ms: frames.filter((d) => d > 50).length,
      },
      latency: {
        marked: Object.keys(marks).length,
        seen: latencies.length,
        p50_ms: round(quantile(latencies, 0.5)),
        p99_ms: round(quantile(latencies, 0.99)),
        max_ms: round(latencies.length ? latencies[latencies.length - 1] : null),
      },
      renderer_cpu_share: round((endMetrics.ProcessTime - startMetrics.ProcessTime) / seconds, 3),
      main_thread_cpu_share: round((endMetrics.ThreadTime - startMetrics.ThreadTime) / seconds, 3),
      js_heap_used_mib: { start: round(startMetrics.JSHeapUsedSize / 2 ** 20), end: round(endMetrics.JSHeapUsedSize / 2 ** 20) },
      js_heap_total_mib: round(endMetrics.JSHeapTotalSize / 2 ** 20),
      dom_nodes: endMetrics.Nodes,
      layouts: endMetrics.LayoutCount - startMetrics.LayoutCount,
      style_recalcs: endMetrics.RecalcStyleCount - startMetrics.RecalcStyleCount,
      renderers: memory.map((m) => ({ pid: m.pid, rss_mib: round(m.rss_kib / 1024), pss_mib: round(m.pss_kib / 1024) })),
    };
    summary.page_errors = errors.slice(0, 10);
    summary.machine = { cpus: require('node:os').cpus().length, loadavg: require('node:os').loadavg().map((x) => round(x, 2)) };

    console.log(JSON.stringify(summary, null, 2));
    const L = summary.live;
    const rows = [
      ['lines loaded', `${summary.load.lines} (shown after ${summary.load.shown_after_s} s; sending took ${summary.load.send_s} s)`],
      ['live load', `${L.rate_per_s} lines/s for ${L.seconds} s (sent in ${L.actual_send_s} s); count at end ${L.count_at_end}`],
      ['long tasks', `${L.longtasks.count}, total ${L.longtasks.total_ms} ms (${round(L.longtasks.share_of_time * 100)} % of the time), max ${L.longtasks.max_ms} ms`],
      ['frames', `${L.frames.count} (${L.frames.per_s}/s): p50 ${L.frames.p50_ms} ms, p99 ${L.frames.p99_ms} ms, max ${L.frames.max_ms} ms, ${L.frames.over_50ms} over 50 ms`],
      ['send → row in DOM', `p50 ${L.latency.p50_ms} ms, p99 ${L.latency.p99_ms} ms, max ${L.latency.max_ms} ms (${L.latency.seen} of ${L.latency.marked} marked lines seen)`],
      ['renderer CPU', `${round(L.renderer_cpu_share * 100)} % of a core (main thread ${round(L.main_thread_cpu_share * 100)} %)`],
      ['JS heap used', `${summary.load.js_heap_used_mib} MiB after loading; ${L.js_heap_used_mib.start} → ${L.js_heap_used_mib.end} MiB during live`],
      ['renderer memory', L.renderers.length ? `RSS ${L.renderers[0].rss_mib} MiB, PSS ${L.renderers[0].pss_mib} MiB (largest renderer)` : 'n/a'],
      ['DOM nodes', `${L.dom_nodes}`],
    ];
    console.log('\n| measure | value |\n|---|---|');
    for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
  } catch (e) {
    console.error(e);
    console.error(f.stderrTail());
    process.exitCode = 1;
  } finally {
    await context.close().catch(() => {});
    await closeBrowser();
    await f.stop().catch((e) => console.error(e.message));
    if (!process.exitCode) f.removeDir();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
