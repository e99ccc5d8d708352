'use strict';
// The deployments views: the table (`/deployments`) and a deployment's page
// (`/deployments/<id>`) with its summary and its log stream, which ends when the deployment
// finishes.

const assert = require('node:assert/strict');
const {
  useBrowser, browserTest, sendEvents, appEvent, waitFor, eventually, shownMessages, firstNumber,
  waitStatus,
} = require('./harness');

useBrowser();

const MSG = /\b(step-\d{3})\b/;
const ID = 'd-browser-1';

/** The text of `column` (its header's name) in the table's row of deployment `id`. */
async function cell(page, id, column) {
  const table = page.getByRole('table', { name: 'Deployments' });
  return table.evaluate((t, [rowId, col]) => {
    const headers = Array.from(t.querySelectorAll('thead th, tr:first-child th')).map((h) => h.textContent.trim());
    const index = headers.indexOf(col);
    if (index < 0) return { error: `no column ${col} among ${JSON.stringify(headers)}` };
    const row = t.querySelector(`[data-testid="deployment-row"][data-id="${rowId}"]`);
    if (!row) return { error: `no row of ${rowId}` };
    const cells = Array.from(row.children);
    return { text: cells[index] ? cells[index].textContent.trim() : null };
  }, [id, column]);
}

async function expectCell(page, id, column, expected, timeout = 10000) {
  let got;
  await waitFor(async () => {
    got = await cell(page, id, column);
    // A word of its own in the cell (an icon or a dot beside it is fine).
    const re = expected instanceof RegExp ? expected : new RegExp(`(^|\\s)${expected.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(\\s|$)`);
    return typeof got.text === 'string' && re.test(got.text);
  }, timeout, () => `column ${column} of ${id} to read ${expected} (got ${JSON.stringify(got)})`);
}

browserTest('a deployment: listed running, its page streams its logs, and finishing it ends the stream', {
  timeout: 60000, viewport: { width: 1280, height: 1200 },
}, async ({ f, page }) => {
  await f.createDeployment({
    id: ID, service: 'checkout', environment: 'staging', version: '1.4.2', commit: '9f2c1e0', started_by: 'alice',
  });
  await f.createDeployment({ id: 'd-other', service: 'web', environment: 'prod', version: '7' });

  // The table.
  await page.goto(f.url('/deployments'));
  await eventually(async () => assert.equal(await page.getByRole('link', { name: 'Deployments', exact: true }).getAttribute('aria-current'), 'page'), 10000, 'Deployments is the current view');
  await expectCell(page, ID, 'Service', 'checkout');
  await expectCell(page, ID, 'Environment', 'staging');
  await expectCell(page, ID, 'Version', '1.4.2');
  await expectCell(page, ID, 'Status', 'running');
  await expectCell(page, 'd-other', 'Service', 'web');
  assert.equal(await page.getByTestId('deployment-row').count(), 2, 'two rows');

  // Its page, by its link.
  await page.getByRole('link', { name: ID, exact: true }).click();
  await eventually(() => assert.equal(new URL(page.url()).pathname, `/deployments/${ID}`), 5000, 'the deployment\'s URL');
  const summary = page.getByTestId('deployment-summary');
  await eventually(async () => {
    const text = await summary.textContent({ timeout: 1000 });
    for (const part of [ID, 'checkout', 'staging', '1.4.2', '9f2c1e0', 'alice']) assert.ok(text.includes(part), `the summary shows ${part}: ${text}`);
  }, 10000, 'the summary');
  await eventually(async () => assert.equal((await page.getByTestId('deployment-status').textContent()).trim(), 'running'), 5000, 'status running');
  await waitStatus(page, 'Live');

  // Its logs, live; another deployment's and unrelated lines stay out.
  const steps = [
    appEvent('step-001 pulling image', { service: 'checkout', environment: 'staging', deployment_id: ID }),
    appEvent('step-002 elsewhere', { service: 'web', deployment_id: 'd-other' }),
    appEvent('step-003 migrating', { service: 'checkout', environment: 'staging', deployment_id: ID, level: 'warn' }),
    appEvent('step-004 not a deployment\'s', { service: 'checkout' }),
    appEvent('step-005 migration failed', { service: 'checkout', environment: 'staging', deployment_id: ID, level: 'error' }),
    appEvent('step-006 rollback failed', { service: 'checkout', environment: 'staging', deployment_id: ID, level: 'error' }),
  ];
  await sendEvents(f.forwardPort, steps);
  let shown;
  await waitFor(async () => {
    shown = await shownMessages(page, MSG);
    return JSON.stringify(shown) === JSON.stringify(['step-001', 'step-003', 'step-005', 'step-006']);
  }, 15000, () => `the deployment's lines (saw ${JSON.stringify(shown)})`);
  // The row of a line shows the deployment id; the start marker is its own row.
  const row = page.getByTestId('line').filter({ hasText: 'step-005' });
  assert.ok((await row.textContent()).includes(ID), 'a line shows its deployment id');
  assert.equal(await row.getAttribute('data-level'), 'error');
  await eventually(async () => assert.ok((await page.getByTestId('marker').count()) >= 1, 'a marker row'), 5000, 'the deployment_started marker');
  const end = page.getByTestId('deployment-end');
  assert.ok(!(await end.count()) || !(await end.isVisible()) || !((await end.textContent()) || '').trim(), 'no end banner while running');

  // Finishing it ends the stream.
  await f.finishDeployment(ID, 'failed', 'smoke tests failed');
  let banner;
  await waitFor(async () => {
    banner = ((await page.getByTestId('deployment-end').textContent({ timeout: 1000 })) || '').replace(/\s+/g, ' ').trim();
    return banner.includes('Deployment failed') && banner.includes('smoke tests failed');
  }, 15000, () => `the end banner "Deployment failed … smoke tests failed" (saw ${JSON.stringify(banner)})`);
  assert.equal(await page.getByTestId('deployment-end').getAttribute('role'), 'status', 'the banner is a status');
  await waitStatus(page, 'Ended', 10000);
  await eventually(async () => assert.equal((await page.getByTestId('deployment-status').textContent()).trim(), 'failed'), 10000, 'the summary\'s status reads failed');
  const d = await f.deployment(ID);
  assert.equal(d.status, 'failed');
  await eventually(async () => assert.equal(firstNumber(await page.getByTestId('deployment-events').textContent()), d.events.total), 10000, `the summary's events total (${d.events.total})`);
  // The stream stays ended (the page closed its EventSource: no reconnect, no doubled lines).
  await new Promise((r) => setTimeout(r, 3000));
  assert.match(await page.getByTestId('connection').textContent(), /Ended/);
  assert.deepEqual(await shownMessages(page, MSG), ['step-001', 'step-003', 'step-005', 'step-006'], 'no line shown twice');

  // The table shows it failed, with its errors.
  assert.equal(d.events.errors, 2, 'flumen counted the two error lines');
  await page.getByRole('link', { name: 'Deployments', exact: true }).click();
  await expectCell(page, ID, 'Status', 'failed');
  await expectCell(page, ID, 'Errors', String(d.events.errors));
  await expectCell(page, 'd-other', 'Status', 'running');
});

browserTest('an unknown deployment says it is not found', async ({ f, page }) => {
  await page.goto(f.url('/deployments/d-no-such-one'));
  await eventually(async () => assert.ok(await page.getByText(/not found/i).first().isVisible(), '"not found" shown'), 10000, 'a not-found message');
});

browserTest('the deployments table refreshes by itself and filters by status', async ({ f, page }) => {
  await page.goto(f.url('/deployments'));
  await eventually(async () => assert.equal(await page.getByRole('table', { name: 'Deployments' }).count(), 1), 10000, 'the table');
  await f.createDeployment({ id: 'd-late', service: 'api', environment: 'prod' });
  await expectCell(page, 'd-late', 'Status', 'running', 8000); // polled every 2 s
  await f.createDeployment({ id: 'd-done', service: 'api', environment: 'prod' });
  await f.finishDeployment('d-done', 'succeeded');
  await expectCell(page, 'd-done', 'Status', 'succeeded', 8000);
  await page.getByRole('combobox', { name: 'Status', exact: true }).selectOption('succeeded');
  await eventually(async () => {
    const ids = await page.getByTestId('deployment-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-id')));
    assert.deepEqual(ids, ['d-done']);
  }, 8000, 'only the succeeded deployment');
  await eventually(() => assert.equal(new URL(page.url()).searchParams.get('status'), 'succeeded'), 5000, 'status=succeeded in the URL');
});
