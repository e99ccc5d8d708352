'use strict';
// The live view (`/`): lines sent over Forward appear; the quick filters (Service, Text, Level)
// narrow them and live in the URL; pause holds new lines and counts them; keys; completion;
// a row expands into its record; a bad query shows an error.

const assert = require('node:assert/strict');
const {
  useBrowser, browserTest, sendEvents, appEvent, waitFor, eventually, shownRows, shownMessages,
  firstNumber, searchParams, waitStatus, sleep,
} = require('./harness');

useBrowser();

// Each test's messages are "<word>-<nnn> …": the part the tests compare.
const MSG = /\b([a-z]+-\d{3})\b/;

const combobox = (page, name) => page.getByRole('combobox', { name, exact: true });
const textFilter = (page) => page.getByRole('searchbox', { name: 'Text', exact: true });
const logList = (page) => page.getByRole('log', { name: 'Log lines' });

async function openLive(page, f, query = '') {
  await page.goto(f.url(`/${query}`));
  await eventually(async () => assert.equal(await logList(page).count(), 1), 10000, 'the log list (role log, "Log lines")');
  await waitStatus(page, 'Live');
}

/** Waits until the messages shown (matching MSG, in order) equal `expected`. */
async function expectShown(page, expected, description, timeout = 15000) {
  let seen;
  await waitFor(async () => {
    seen = await shownMessages(page, MSG);
    return JSON.stringify(seen) === JSON.stringify(expected);
  }, timeout, () => `${description}: the list to show ${JSON.stringify(expected)} (it showed ${JSON.stringify(seen)})`);
}

function activeIs(locator) {
  return locator.evaluate((el) => el === document.activeElement);
}

async function blurAll(page) {
  await page.evaluate(() => { if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur(); });
}

browserTest('lines sent over Forward appear with their time, level, service and text, and the count', async ({ f, page }) => {
  await openLive(page, f);
  const sent = [
    appEvent('alpha-001 user signed in', { service: 'api', level: 'info' }),
    appEvent('alpha-002 cache nearly full', { service: 'web', level: 'warn' }),
    appEvent('alpha-003 payment declined', { service: 'billing', level: 'error' }),
  ];
  await sendEvents(f.forwardPort, sent);
  await expectShown(page, ['alpha-001', 'alpha-002', 'alpha-003'], 'live lines');
  const rows = (await shownRows(page)).filter((r) => MSG.test(r.text));
  for (const [i, ev] of sent.entries()) {
    const row = rows[i];
    assert.ok(row.text.includes(ev.record.message), `row ${i} shows the whole text "${ev.record.message}": ${JSON.stringify(row.text)}`);
    assert.equal(row.level, ev.record.level, `row ${i} data-level`);
    assert.match(row.text, new RegExp(`\\b${ev.record.level}\\b`, 'i'), `row ${i} shows its level`);
    assert.match(row.text, new RegExp(`\\b${ev.record.service}\\b`), `row ${i} shows its service`);
    assert.match(row.text, /\b\d\d:\d\d:\d\d\.\d\d\d\b/, `row ${i} shows its time as HH:MM:SS.mmm`);
    assert.ok(row.position, `row ${i} has a data-position`);
  }
  // The rows' positions are the stream's (the search API's) positions.
  const stored = (await f.waitStored(3, '{tag=~"app.*"}')).slice().reverse(); // oldest first
  assert.deepEqual(rows.map((r) => r.position), stored.map((e) => e.position));
  await eventually(async () => {
    const n = firstNumber(await page.getByTestId('count').textContent());
    assert.equal(n, 3, 'the count testid');
  }, 5000, 'the count of lines');
  await eventually(async () => assert.equal(await page.getByRole('link', { name: 'Live', exact: true }).getAttribute('aria-current'), 'page'), 5000, 'Live is the current view');
});

browserTest('the Service filter keeps only its service, also for new lines, and the URL holds it across a reload', async ({ f, page }) => {
  await sendEvents(f.forwardPort, [
    appEvent('bravo-001 from api', { service: 'api' }),
    appEvent('bravo-002 from web', { service: 'web' }),
    appEvent('bravo-003 from api again', { service: 'api' }),
  ]);
  await f.waitStored(3, '{tag=~"app.*"}'); // the quick filters' options come from the store
  await openLive(page, f);
  await expectShown(page, ['bravo-001', 'bravo-002', 'bravo-003'], 'before filtering');
  await combobox(page, 'Service').selectOption('api');
  await expectShown(page, ['bravo-001', 'bravo-003'], 'Service = api');
  await eventually(async () => assert.equal(searchParams(page).get('service'), 'api'), 5000, 'service=api in the URL');
  await waitStatus(page, 'Live');
  await sendEvents(f.forwardPort, [
    appEvent('bravo-004 new from web', { service: 'web' }),
    appEvent('bravo-005 new from api', { service: 'api' }),
    appEvent('bravo-006 new from billing', { service: 'billing' }),
  ]);
  await expectShown(page, ['bravo-001', 'bravo-003', 'bravo-005'], 'new lines under Service = api');
  await sleep(500); // a line of another service arriving late would show by now
  await expectShown(page, ['bravo-001', 'bravo-003', 'bravo-005'], 'still only api');
  for (const r of await shownRows(page)) assert.match(r.text, /\bapi\b/, `a row of service api: ${r.text}`);

  await page.reload();
  await eventually(async () => assert.equal(await combobox(page, 'Service').inputValue(), 'api'), 10000, 'the Service select restored from the URL');
  await expectShown(page, ['bravo-001', 'bravo-003', 'bravo-005'], 'after reloading');

  // "All" lifts it again.
  await combobox(page, 'Service').selectOption('');
  await expectShown(page, ['bravo-001', 'bravo-002', 'bravo-003', 'bravo-004', 'bravo-005', 'bravo-006'], 'Service = All');
  await eventually(async () => assert.equal(searchParams(page).get('service'), null), 5000, 'no service in the URL');
});

browserTest('the Text filter keeps the matching lines and highlights the matches', async ({ f, page }) => {
  await sendEvents(f.forwardPort, [
    appEvent('charlie-001 upstream Timeout on /pay', { service: 'api', level: 'error' }),
    appEvent('charlie-002 all good', { service: 'api' }),
    appEvent('charlie-003 another timeout (retrying)', { service: 'web', level: 'warn' }),
  ]);
  await openLive(page, f);
  await expectShown(page, ['charlie-001', 'charlie-002', 'charlie-003'], 'before filtering');
  const text = textFilter(page);
  await text.fill('timeout');
  await text.press('Enter');
  await expectShown(page, ['charlie-001', 'charlie-003'], 'Text = timeout (case-insensitive)');
  await eventually(async () => {
    const rows = (await shownRows(page)).filter((r) => MSG.test(r.text));
    assert.equal(rows.length, 2);
    assert.deepEqual(rows.map((r) => r.marks.map((m) => m.toLowerCase())), [['timeout'], ['timeout']], 'each match wrapped in <mark>');
  }, 5000, 'highlighted matches');
  await eventually(async () => assert.equal(searchParams(page).get('text'), 'timeout'), 5000, 'text=timeout in the URL');
  // Regex characters are taken literally.
  await text.fill('(retrying)');
  await text.press('Enter');
  await expectShown(page, ['charlie-003'], 'Text = "(retrying)", literally');
  await sendEvents(f.forwardPort, [
    appEvent('charlie-004 retrying without parentheses', { service: 'api' }),
    appEvent('charlie-005 still (retrying)', { service: 'api' }),
  ]);
  await expectShown(page, ['charlie-003', 'charlie-005'], 'new lines under Text = "(retrying)"');
});

browserTest('the Level filter keeps only that level', async ({ f, page }) => {
  await sendEvents(f.forwardPort, [
    appEvent('delta-001 fine', { level: 'info' }),
    appEvent('delta-002 broken', { level: 'error' }),
    appEvent('delta-003 hmm', { level: 'warn' }),
    appEvent('delta-004 broken again', { level: 'error', service: 'web' }),
  ]);
  await f.waitStored(4, '{tag=~"app.*"}'); // the quick filters' options come from the store
  await openLive(page, f);
  await expectShown(page, ['delta-001', 'delta-002', 'delta-003', 'delta-004'], 'before filtering');
  await combobox(page, 'Level').selectOption('error');
  await expectShown(page, ['delta-002', 'delta-004'], 'Level = error');
  for (const r of await shownRows(page)) assert.equal(r.level, 'error');
  await eventually(async () => assert.equal(searchParams(page).get('level'), 'error'), 5000, 'level=error in the URL');
  await waitStatus(page, 'Live');
  await sendEvents(f.forwardPort, [appEvent('delta-005 ok', { level: 'info' }), appEvent('delta-006 down', { level: 'error' })]);
  await expectShown(page, ['delta-002', 'delta-004', 'delta-006'], 'new lines under Level = error');
});

browserTest('a URL with filters opens with them set and applied', async ({ f, page }) => {
  await sendEvents(f.forwardPort, [
    appEvent('echo-001 boom in api', { service: 'api', level: 'error' }),
    appEvent('echo-002 boom in web', { service: 'web', level: 'error' }),
    appEvent('echo-003 calm in api', { service: 'api', level: 'error' }),
    appEvent('echo-004 boom but info', { service: 'api', level: 'info' }),
    appEvent('echo-005 Boom again', { service: 'api', level: 'error', environment: 'staging' }),
  ]);
  await f.waitStored(5, '{tag=~"app.*"}');
  await openLive(page, f, '?service=api&level=error&text=boom');
  await expectShown(page, ['echo-001', 'echo-005'], 'service=api&level=error&text=boom');
  assert.equal(await combobox(page, 'Service').inputValue(), 'api');
  assert.equal(await combobox(page, 'Level').inputValue(), 'error');
  assert.equal(await textFilter(page).inputValue(), 'boom');
  // Adding Environment keeps the others in the URL; reloading restores all of them.
  await combobox(page, 'Environment').selectOption('staging');
  await expectShown(page, ['echo-005'], '+ environment=staging');
  await eventually(async () => {
    const p = searchParams(page);
    assert.deepEqual([p.get('service'), p.get('level'), p.get('text'), p.get('environment')], ['api', 'error', 'boom', 'staging']);
  }, 5000, 'the URL holds the four filters');
  await page.reload();
  await expectShown(page, ['echo-005'], 'after reloading');
  assert.equal(await combobox(page, 'Environment').inputValue(), 'staging');
  assert.equal(await textFilter(page).inputValue(), 'boom');
});

browserTest('Pause holds new lines and counts them; Resume shows them in order', async ({ f, page }) => {
  await openLive(page, f);
  await sendEvents(f.forwardPort, [appEvent('foxtrot-001 first'), appEvent('foxtrot-002 second')]);
  await expectShown(page, ['foxtrot-001', 'foxtrot-002'], 'before pausing');
  await page.getByRole('button', { name: 'Pause', exact: true }).click();
  const resume = page.getByRole('button', { name: 'Resume', exact: true });
  await eventually(async () => assert.equal(await resume.getAttribute('aria-pressed'), 'true'), 5000, 'the button reads Resume, pressed');
  await waitStatus(page, 'Paused');
  const held = [3, 4, 5, 6, 7].map((n) => appEvent(`foxtrot-00${n} while paused`, { service: n % 2 ? 'api' : 'web' }));
  await sendEvents(f.forwardPort, held);
  const newLines = page.getByTestId('new-lines');
  let seen;
  await waitFor(async () => {
    seen = await newLines.textContent({ timeout: 1000 });
    return /\b5 new lines\b/.test(seen || '');
  }, 10000, () => `"5 new lines" (it read ${JSON.stringify(seen)})`);
  await expectShown(page, ['foxtrot-001', 'foxtrot-002'], 'nothing added while paused');
  await resume.click();
  await expectShown(page, ['foxtrot-001', 'foxtrot-002', 'foxtrot-003', 'foxtrot-004', 'foxtrot-005', 'foxtrot-006', 'foxtrot-007'], 'after Resume, in order');
  const pause = page.getByRole('button', { name: 'Pause', exact: true });
  assert.equal(await pause.getAttribute('aria-pressed'), 'false');
  await waitStatus(page, 'Live');
  await eventually(async () => {
    const visible = await newLines.isVisible();
    const n = visible ? firstNumber(await newLines.textContent()) : 0;
    assert.ok(!visible || n === 0, `no held lines announced after resuming (visible: ${visible}, n: ${n})`);
  }, 5000, 'the new-lines button after resuming');

  // Pause again; the "N new lines" button itself resumes.
  await pause.click();
  await sendEvents(f.forwardPort, [appEvent('foxtrot-008 held'), appEvent('foxtrot-009 held')]);
  await waitFor(async () => /\b2 new lines\b/.test((await newLines.textContent({ timeout: 1000 })) || ''), 10000, '"2 new lines"');
  await newLines.click();
  await expectShown(page, ['foxtrot-001', 'foxtrot-002', 'foxtrot-003', 'foxtrot-004', 'foxtrot-005', 'foxtrot-006', 'foxtrot-007', 'foxtrot-008', 'foxtrot-009'], 'after clicking "2 new lines"');
  await eventually(async () => assert.equal(await pause.getAttribute('aria-pressed'), 'false'), 5000, 'resumed');
});

browserTest('space toggles pause and "/" focuses the query input, when no input has focus', async ({ f, page }) => {
  await openLive(page, f);
  await sendEvents(f.forwardPort, [appEvent('golf-001 one')]);
  await expectShown(page, ['golf-001'], 'a line');
  await blurAll(page);
  await page.keyboard.press('Space');
  const resume = page.getByRole('button', { name: 'Resume', exact: true });
  await eventually(async () => assert.equal(await resume.getAttribute('aria-pressed'), 'true'), 5000, 'space paused');
  await sendEvents(f.forwardPort, [appEvent('golf-002 two')]);
  await waitFor(async () => /\b1 new lines?\b/.test((await page.getByTestId('new-lines').textContent({ timeout: 1000 })) || ''), 10000, '"1 new line(s)"');
  await blurAll(page);
  await page.keyboard.press('Space');
  const pause = page.getByRole('button', { name: 'Pause', exact: true });
  await eventually(async () => assert.equal(await pause.getAttribute('aria-pressed'), 'false'), 5000, 'space resumed');
  await expectShown(page, ['golf-001', 'golf-002'], 'after resuming with space');

  const query = combobox(page, 'Query');
  await blurAll(page);
  await page.keyboard.press('/');
  await eventually(async () => assert.ok(await activeIs(query), 'the Query input has focus'), 5000, '"/" focuses Query');
  // Space in the input types a space, it does not pause.
  await page.keyboard.press('Space');
  await sleep(200);
  assert.equal(await pause.getAttribute('aria-pressed'), 'false', 'space in an input does not pause');
  // Escape leaves the input.
  await page.keyboard.press('Escape');
  await page.keyboard.press('Escape');
  await eventually(async () => assert.ok(!(await activeIs(query)), 'Query lost focus'), 5000, 'Escape leaves the input');
});

browserTest('the query input completes label names and values', async ({ f, page }) => {
  await sendEvents(f.forwardPort, [
    appEvent('hotel-001 a', { service: 'api' }),
    appEvent('hotel-002 b', { service: 'web' }),
    appEvent('hotel-003 c', { service: 'billing', environment: 'staging' }),
  ]);
  await f.waitStored(3, '{tag=~"app.*"}');
  await openLive(page, f);
  const query = combobox(page, 'Query');
  await query.click();
  await query.fill('');
  await query.pressSequentially('{');
  const listbox = page.getByRole('listbox');
  // The completion's options (the quick filters' <select>s have options too).
  const optionNames = async () => (await listbox.getByRole('option').allTextContents()).map((s) => s.trim());
  await eventually(async () => {
    const names = await optionNames();
    for (const label of ['service', 'environment', 'level']) {
      assert.ok(names.some((n) => n.startsWith(label)), `option ${label} among ${JSON.stringify(names)}`);
    }
  }, 10000, 'label names offered after "{"');
  assert.equal(await query.getAttribute('aria-expanded'), 'true', 'the combobox is expanded');
  await page.keyboard.press('Escape');
  await eventually(async () => assert.equal(await listbox.isVisible(), false), 5000, 'Escape closes the list');

  await query.fill('');
  await query.pressSequentially('{service="');
  await eventually(async () => {
    const names = await optionNames();
    for (const value of ['api', 'web', 'billing']) {
      assert.ok(names.some((n) => n.startsWith(value)), `option ${value} among ${JSON.stringify(names)}`);
    }
  }, 10000, 'service values offered after service="');
  // Narrowing by what is typed, then accepting with Enter.
  await query.pressSequentially('bil');
  await eventually(async () => {
    const names = await optionNames();
    assert.ok(names.length >= 1 && names.every((n) => n.startsWith('bil')), `only billing offered: ${JSON.stringify(names)}`);
  }, 5000, 'values narrowed by the typed prefix');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('Enter');
  await eventually(async () => assert.match(await query.inputValue(), /^\{service="billing"/), 5000, 'the value accepted into the query');
  await eventually(async () => assert.equal(await listbox.isVisible(), false), 5000, 'the list closes after accepting');
  // Complete the query and apply it with Enter.
  await query.fill('{service="billing"}');
  await page.keyboard.press('Escape').catch(() => {});
  await query.focus();
  await query.press('Enter');
  await expectShown(page, ['hotel-003'], 'the query {service="billing"} applied');
  await eventually(async () => assert.equal(searchParams(page).get('query'), '{service="billing"}'), 5000, 'the query in the URL');
});

browserTest('clicking a row expands it into the record\'s fields, with Copy line and Copy link', async ({ f, page }) => {
  await openLive(page, f);
  await sendEvents(f.forwardPort, [
    appEvent('india-001 checkout failed', {
      service: 'api', level: 'error', request_id: 'req-4711', http: { status: 503, path: '/pay' },
    }),
    appEvent('india-002 next line', { service: 'api', trace_id: 'tr-9000' }),
  ]);
  await expectShown(page, ['india-001', 'india-002'], 'the lines');
  const log = logList(page);
  assert.equal(await log.getByText('req-4711').count(), 0, 'the fields are not shown before expanding');
  await page.getByTestId('line').filter({ hasText: 'india-001' }).click();
  await eventually(async () => {
    assert.ok(await log.getByText('request_id').first().isVisible(), 'the field name request_id');
    assert.ok(await log.getByText('req-4711').first().isVisible(), 'its value req-4711');
    assert.ok(await log.getByText('503').first().isVisible(), 'a nested field (http.status = 503)');
  }, 5000, 'the expanded record');
  assert.ok(await page.getByRole('button', { name: 'Copy line' }).isVisible(), 'a Copy line button');
  assert.ok(await page.getByRole('button', { name: 'Copy link' }).isVisible(), 'a Copy link button');
  // Enter on a focused row expands it too.
  const second = page.getByTestId('line').filter({ hasText: 'india-002' });
  await second.focus();
  await second.press('Enter');
  await eventually(async () => assert.ok(await log.getByText('tr-9000').first().isVisible(), 'its field trace_id = tr-9000'), 5000, 'Enter expands the focused row');
});

browserTest('a bad query shows the server\'s reason', async ({ f, page }) => {
  await openLive(page, f);
  const bad = '{service="api"';
  const answer = await fetch(f.url(`/api/v1/query?${new URLSearchParams({ query: bad, limit: '1' })}`));
  assert.equal(answer.status, 400);
  const reason = (await answer.text()).trim();
  const key = (reason.match(/column \d+/) || [reason])[0];
  const query = combobox(page, 'Query');
  await query.fill(bad);
  await page.keyboard.press('Escape'); // close a completion list, if any
  await query.focus();
  await query.press('Enter');
  let shown;
  await waitFor(async () => {
    const alerts = await page.getByRole('alert').allTextContents();
    const status = (await page.getByTestId('connection').textContent({ timeout: 1000 })) || '';
    shown = { alerts, status };
    return [...alerts, status].some((t) => t.includes(key));
  }, 10000, () => `the reason "${reason}" (its "${key}") in a role=alert or the status (saw ${JSON.stringify(shown)})`);
});

browserTest('the list follows the newest line as lines pour in; scrolling up holds it, "Jump to latest" follows again', {
  timeout: 60000,
}, async ({ f, page }) => {
  await openLive(page, f);
  const FOLLOW = /\bfollow-(\d{4})\b/;
  const batch = (from, n) => Array.from({ length: n }, (_, k) => appEvent(`follow-${String(from + k).padStart(4, '0')} GET /api/items 200`, { service: 'api' }));
  const log = logList(page);
  const jump = page.getByRole('button', { name: 'Jump to latest' });
  /** The numbers of the rows inside the list's visible box. */
  const inView = async () => {
    const box = await log.boundingBox();
    const rows = (await shownRows(page)) || [];
    return rows.filter((r) => r.top >= box.y - 1 && r.top + r.height <= box.y + box.height + 1)
      .map((r) => (r.text.match(FOLLOW) || [])[1]).filter(Boolean).map(Number);
  };
  // 3,000 lines as fast as they go.
  await sendEvents(f.forwardPort, batch(0, 3000), { mode: 'PackedForward' });
  let seen;
  let jumpShown;
  await waitFor(async () => {
    seen = await inView();
    jumpShown = await jump.isVisible();
    return seen.includes(2999);
  }, 20000, () => `the newest line (follow-2999) in view, nobody having scrolled (in view: ${seen && seen.length ? `follow-${seen[0]} … follow-${seen[seen.length - 1]}` : 'none'}; "Jump to latest" visible: ${jumpShown})`);
  assert.equal(await jump.isVisible(), false, '"Jump to latest" is not shown while following');
  await eventually(async () => assert.equal(firstNumber(await page.getByTestId('count').textContent()), 3000), 5000, '3000 lines counted');

  // The user scrolls up: the view stays, new lines do not move it.
  const box = await log.boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.wheel(0, -3000);
  await eventually(async () => assert.ok(await jump.isVisible(), '"Jump to latest" appears'), 5000, 'scrolled up');
  await sleep(300);
  const held = await inView();
  assert.ok(held.length > 0 && !held.includes(2999), `scrolled away from the newest line: ${JSON.stringify(held)}`);
  await sendEvents(f.forwardPort, batch(3000, 200), { mode: 'PackedForward' });
  await eventually(async () => assert.equal(firstNumber(await page.getByTestId('count').textContent()), 3200), 10000, '3200 lines counted');
  await sleep(300);
  assert.deepEqual(await inView(), held, 'the view stays where the user scrolled');

  await jump.click();
  await waitFor(async () => (await inView()).includes(3199), 5000, 'the newest line in view after "Jump to latest"');
  await eventually(async () => assert.equal(await jump.isVisible(), false), 5000, '"Jump to latest" hides when following');
  await sendEvents(f.forwardPort, batch(3200, 20), { mode: 'PackedForward' });
  await waitFor(async () => (await inView()).includes(3219), 10000, 'following again');
});

browserTest('the Deployment filter keeps one deployment\'s lines', async ({ f, page }) => {
  await f.createDeployment({ id: 'd-7', service: 'api', environment: 'prod', version: '2.0' });
  await f.createDeployment({ id: 'd-8', service: 'api', environment: 'prod', version: '2.1' });
  await sendEvents(f.forwardPort, [
    appEvent('juliet-001 of d-7', { deployment_id: 'd-7' }),
    appEvent('juliet-002 of d-8', { deployment_id: 'd-8' }),
    appEvent('juliet-003 of none'),
    appEvent('juliet-004 of d-7 again', { deployment_id: 'd-7', level: 'error' }),
  ]);
  await openLive(page, f);
  await expectShown(page, ['juliet-001', 'juliet-002', 'juliet-003', 'juliet-004'], 'before filtering');
  await combobox(page, 'Deployment').selectOption('d-7');
  await expectShown(page, ['juliet-001', 'juliet-004'], 'Deployment = d-7');
  for (const r of (await shownRows(page)).filter((x) => MSG.test(x.text))) assert.match(r.text, /\bd-7\b/, `the row shows its deployment: ${r.text}`);
  await eventually(() => assert.equal(searchParams(page).get('deployment'), 'd-7'), 5000, 'deployment=d-7 in the URL');
});

browserTest('Copy line and Copy link put the line and a search URL around it on the clipboard', async ({ f, page, context }) => {
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: f.api });
  await openLive(page, f);
  const at = Date.now() - 5000;
  await sendEvents(f.forwardPort, [appEvent('kilo-001 card declined for order 77', { service: 'billing', level: 'error', time: at })]);
  await expectShown(page, ['kilo-001'], 'the line');
  await page.getByTestId('line').filter({ hasText: 'kilo-001' }).click();
  const clipboard = () => page.evaluate(() => navigator.clipboard.readText());
  await page.getByRole('button', { name: 'Copy line' }).click();
  await eventually(async () => assert.equal(await clipboard(), 'kilo-001 card declined for order 77'), 5000, 'Copy line copies the line text');
  await page.getByRole('button', { name: 'Copy link' }).click();
  const link = await eventually(async () => {
    const text = await clipboard();
    assert.match(text, /\/search\?/, `a search URL: ${text}`);
    return new URL(text, f.api);
  }, 5000, 'Copy link copies a URL of the search view');
  assert.equal(link.pathname, '/search');
  const start = Date.parse(link.searchParams.get('start')) || Number(link.searchParams.get('start'));
  const end = Date.parse(link.searchParams.get('end')) || Number(link.searchParams.get('end'));
  assert.ok(Math.abs(start - (at - 60000)) <= 1000 && Math.abs(end - (at + 60000)) <= 1000,
    `start/end a minute either side of the event (${new Date(at).toISOString()}): ${link.search}`);
  assert.ok(link.searchParams.get('query') !== null, `the link holds a query: ${link.search}`);
  // The link opens the search view with the event in its results.
  await page.goto(link.href);
  await eventually(async () => assert.ok((await shownMessages(page, MSG, '[data-testid="results"]')).includes('kilo-001')), 15000, 'the event among the results of the link');
});
