'use strict';
// The search view (`/search`): the histogram's legend counts by level and in all, results newest
// first with "Load more", and a drag across the histogram zooming into a custom range that the
// URL holds.

const assert = require('node:assert/strict');
const {
  useBrowser, browserTest, sendEvents, appEvent, waitFor, eventually, shownMessages, firstNumber,
  searchParams,
} = require('./harness');

useBrowser();

const MSG = /\b(kilo-\d{3})\b/;
const LEVELS = { info: 100, warn: 30, error: 15, debug: 5 };
const TOTAL = 150;
const SPACING_MS = 8000; // 150 events over the last 20 minutes

function corpus(now) {
  const levels = [];
  for (const [level, count] of Object.entries(LEVELS)) for (let i = 0; i < count; i++) levels.push(level);
  // Spread the levels over time (a fixed shuffle: every 7th, modulo 150, is coprime).
  return Array.from({ length: TOTAL }, (_, i) => {
    const level = levels[(i * 7) % TOTAL];
    const time = now - (TOTAL - i) * SPACING_MS;
    return appEvent(`kilo-${String(i).padStart(3, '0')} ${level} event`, {
      level, service: ['api', 'web'][i % 2], time,
    });
  });
}

const name = (i) => `kilo-${String(i).padStart(3, '0')}`;
const RESULTS = '[data-testid="results"]';

async function legend(page) {
  const out = {};
  for (const level of Object.keys(LEVELS)) {
    const entry = page.getByTestId(`legend-${level}`);
    out[level] = (await entry.count()) ? ((await entry.textContent()) || '').trim().replace(/\s+/g, ' ') : null;
  }
  out.total = ((await page.getByTestId('histogram-total').textContent({ timeout: 1000 })) || '').trim();
  return out;
}

async function selectedRange(page) {
  return page.getByRole('combobox', { name: 'Range', exact: true }).evaluate((s) => (s.selectedOptions[0] ? s.selectedOptions[0].textContent.trim() : ''));
}

browserTest('the histogram counts by level, results come newest first, Load more, and a drag zooms in', {
  timeout: 60000, viewport: { width: 1280, height: 1000 },
}, async ({ f, page }) => {
  const now = Date.now();
  const events = corpus(now);
  await sendEvents(f.forwardPort, events);
  await f.waitStored(TOTAL, '{tag=~"app.*"}');

  await page.goto(f.url('/search'));
  await eventually(async () => assert.equal(await page.getByRole('link', { name: 'Search', exact: true }).getAttribute('aria-current'), 'page'), 10000, 'Search is the current view');
  assert.equal(await selectedRange(page), 'Last 1 hour', 'the default range');
  const query = page.getByRole('combobox', { name: 'Query', exact: true });
  await query.fill('{tag=~"app.*"}');
  await page.getByRole('button', { name: 'Run', exact: true }).click();

  // The histogram and its legend.
  const histogram = page.getByRole('img', { name: 'Events over time by level' });
  await eventually(async () => assert.ok(await histogram.isVisible(), 'the histogram'), 10000, 'the histogram');
  const expectedLegend = { info: 'info 100', warn: 'warn 30', error: 'error 15', debug: 'debug 5', total: '150 events' };
  let seen;
  await waitFor(async () => {
    seen = await legend(page);
    return JSON.stringify(seen) === JSON.stringify(expectedLegend);
  }, 15000, () => `the legend ${JSON.stringify(expectedLegend)} (saw ${JSON.stringify(seen)})`);
  await eventually(() => assert.equal(searchParams(page).get('query'), '{tag=~"app.*"}'), 5000, 'the query in the URL');

  // Results: the first 100, newest first; then Load more.
  const results = page.getByRole('list', { name: 'Results' });
  assert.equal(await results.count(), 1, 'a list named Results');
  const first100 = Array.from({ length: 100 }, (_, k) => name(TOTAL - 1 - k));
  let shown;
  await waitFor(async () => {
    shown = await shownMessages(page, MSG, RESULTS, { scroll: true });
    return JSON.stringify(shown) === JSON.stringify(first100);
  }, 15000, () => `the 100 newest results, newest first (saw ${shown && shown.length}: ${JSON.stringify((shown || []).slice(0, 5))}…)`);
  assert.equal(firstNumber(await page.getByTestId('result-count').textContent()), 100, '"100 events shown"');
  await page.getByRole('button', { name: 'Load more', exact: true }).click();
  const all = Array.from({ length: TOTAL }, (_, k) => name(TOTAL - 1 - k));
  await waitFor(async () => {
    shown = await shownMessages(page, MSG, RESULTS, { scroll: true });
    return JSON.stringify(shown) === JSON.stringify(all);
  }, 15000, () => `all 150 results after Load more (saw ${shown && shown.length})`);
  await eventually(async () => assert.equal(firstNumber(await page.getByTestId('result-count').textContent()), TOTAL), 5000, '"150 events shown"');
  await eventually(async () => {
    const more = page.getByRole('button', { name: 'Load more', exact: true });
    assert.ok(!(await more.isVisible()) || (await more.isDisabled()), 'no Load more once there is no next page');
  }, 5000, 'Load more gone');

  // A drag across the right part of the histogram (the events are in the last 20 minutes of
  // the hour shown): the range becomes Custom, the URL gets start and end, everything reruns.
  const box = await histogram.boundingBox();
  const y = box.y + box.height / 2;
  await page.mouse.move(box.x + box.width * 0.55, y);
  await page.mouse.down();
  for (let k = 1; k <= 10; k++) await page.mouse.move(box.x + box.width * (0.55 + 0.03 * k), y);
  await page.mouse.up();
  await eventually(async () => assert.equal(await selectedRange(page), 'Custom'), 5000, 'the range reads Custom after the drag');
  const params = await eventually(() => {
    const p = searchParams(page);
    assert.ok(p.get('start') && p.get('end'), `start and end in the URL: ${page.url()}`);
    return p;
  }, 5000, 'start and end in the URL');
  const start = Number(params.get('start'));
  const end = Number(params.get('end'));
  assert.ok(Number.isFinite(start) && Number.isFinite(end), `start and end are Unix ms: ${params}`);
  assert.ok(start < end, 'start before end');
  assert.ok(start > now - 3600e3 - 120e3 && end < Date.now() + 120e3, `the range within the hour shown: ${new Date(start).toISOString()} – ${new Date(end).toISOString()}`);
  assert.ok(await page.getByLabel('From', { exact: true }).isVisible(), 'a From input');
  assert.ok(await page.getByLabel('To', { exact: true }).isVisible(), 'a To input');
  const inside = events.filter((e) => e.time >= start && e.time <= end).map((e) => e.record.message.match(MSG)[1]).reverse();
  assert.ok(inside.length > 0 && inside.length < TOTAL, `the drag selected some of the events (${inside.length}): ${new Date(start).toISOString()} – ${new Date(end).toISOString()}`);
  await waitFor(async () => {
    shown = await shownMessages(page, MSG, RESULTS, { scroll: true });
    // Newest first; an event right on an edge may fall either side of it.
    const outside = shown.filter((m) => !inside.includes(m)).length;
    const sorted = shown.every((m, k) => k === 0 || m < shown[k - 1]);
    return Math.abs(shown.length - inside.length) <= 1 && outside <= 1 && sorted;
  }, 15000, () => `the results of the zoomed range (${inside.length} expected, saw ${shown && shown.length})`);
  // The histogram reran: its total is the zoomed range's (buckets may round its edges by a step).
  const step = (end - start) / 40; // ≥ the page's bucket (about 60 in the range)
  const slack = Math.ceil(step / SPACING_MS) + 1;
  await eventually(async () => {
    const total = firstNumber(await page.getByTestId('histogram-total').textContent());
    assert.ok(Math.abs(total - inside.length) <= slack, `histogram total ${total} ≈ ${inside.length} (±${slack})`);
  }, 15000, 'the histogram of the zoomed range');

  // Reloading the URL restores the custom range; Zoom out doubles it.
  await page.reload();
  await eventually(async () => assert.equal(await selectedRange(page), 'Custom'), 10000, 'Custom restored from the URL');
  await waitFor(async () => {
    shown = await shownMessages(page, MSG, RESULTS, { scroll: true });
    return Math.abs(shown.length - inside.length) <= 1;
  }, 15000, () => `the zoomed results after a reload (${inside.length} expected, saw ${shown && shown.length})`);
  await page.getByRole('button', { name: 'Zoom out', exact: true }).click();
  await eventually(() => {
    const p = searchParams(page);
    const width = Number(p.get('end')) - Number(p.get('start'));
    assert.ok(Math.abs(width - 2 * (end - start)) <= 2000, `the range doubled: ${width} ms vs ${end - start} ms`);
  }, 5000, 'Zoom out');
});

browserTest('a bad query in search shows the reason in an alert', async ({ f, page }) => {
  await page.goto(f.url('/search'));
  const query = page.getByRole('combobox', { name: 'Query', exact: true });
  await query.fill('{service=}');
  await page.getByRole('button', { name: 'Run', exact: true }).click();
  const answer = await fetch(f.url(`/api/v1/query?${new URLSearchParams({ query: '{service=}', limit: '1' })}`));
  assert.equal(answer.status, 400);
  const reason = (await answer.text()).trim();
  const key = (reason.match(/column \d+/) || [reason])[0];
  let alerts;
  await waitFor(async () => {
    alerts = await page.getByRole('alert').allTextContents();
    return alerts.some((t) => t.includes(key));
  }, 10000, () => `"${key}" of "${reason}" in role=alert (saw ${JSON.stringify(alerts)})`);
});
