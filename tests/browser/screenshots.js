'use strict';
// Screenshots of the page's views for the documentation (not a test):
//
//   FLUMEN_SCREENSHOTS=1 FLUMEN_BIN=… node tests/browser/screenshots.js
//
// writes docs/screenshots/{live,live-light,live-narrow,search,deployments,deployment}.png.
// Without FLUMEN_SCREENSHOTS=1 it writes nothing and says so. FLUMEN_SCREENSHOTS_DIR=DIR
// writes them to DIR instead (to look at them without touching docs/).

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const {
  REPO_ROOT, startFlumen, getBrowser, closeBrowser, sendEvents, appEvent, waitFor, waitStatus, firstNumber,
  shownRows,
} = require('./harness');

const OUT = process.env.FLUMEN_SCREENSHOTS_DIR || path.join(REPO_ROOT, 'docs', 'screenshots');

const SERVICES = ['api', 'web', 'billing', 'checkout'];
const PATHS = ['/api/orders', '/api/cart', '/login', '/api/payments', '/healthz', '/api/search'];

function sampleLine(i) {
  const service = SERVICES[i % SERVICES.length];
  const r = (i * 2654435761) % 1000;
  if (r < 30) return { service, level: 'error', message: `upstream timeout after 5000ms calling ${service === 'billing' ? 'payments-gw' : 'billing'} (request ${1000 + i})` };
  if (r < 110) return { service, level: 'warn', message: `slow query: SELECT * FROM orders WHERE customer_id = $1 took ${200 + (r % 700)}ms` };
  if (r < 200) return { service, level: 'debug', message: `cache miss for key session:${(r * 7919).toString(16)}` };
  const p = PATHS[r % PATHS.length];
  return { service, level: 'info', message: `GET ${p} 200 ${(r % 90) + 3}ms` };
}

async function main() {
  if (process.env.FLUMEN_SCREENSHOTS !== '1') {
    console.log('screenshots.js: set FLUMEN_SCREENSHOTS=1 to write the screenshots (nothing written).');
    return;
  }
  fs.mkdirSync(OUT, { recursive: true });
  const f = await startFlumen({ name: 'screenshots' });
  try {
    const now = Date.now();
    // Half an hour of history for the search view's histogram, then deployments.
    const history = Array.from({ length: 600 }, (_, i) => {
      const l = sampleLine(i);
      return appEvent(l.message, { service: l.service, level: l.level, environment: 'prod', time: now - (600 - i) * 3000 });
    });
    await sendEvents(f.forwardPort, history);
    await f.createDeployment({ id: 'd-1041', service: 'checkout', environment: 'prod', version: '2.8.0', commit: '4be91c2', started_by: 'ci' });
    await sendEvents(f.forwardPort, [
      appEvent('pulling image registry.local/checkout:2.8.0', { service: 'checkout', deployment_id: 'd-1041' }),
      appEvent('running migrations (3 pending)', { service: 'checkout', deployment_id: 'd-1041' }),
      appEvent('migration 0042_add_refunds applied in 812ms', { service: 'checkout', deployment_id: 'd-1041' }),
      appEvent('health check /healthz answered 503, retrying', { service: 'checkout', deployment_id: 'd-1041', level: 'warn' }),
      appEvent('health check failed 5 times: connection refused', { service: 'checkout', deployment_id: 'd-1041', level: 'error' }),
      appEvent('rolling back to 2.7.3', { service: 'checkout', deployment_id: 'd-1041', level: 'warn' }),
    ]);
    await f.finishDeployment('d-1041', 'failed', 'health checks failed; rolled back');
    await f.createDeployment({ id: 'd-1042', service: 'api', environment: 'staging', version: '1.19.0', commit: 'a7d03f9', started_by: 'alice' });
    await sendEvents(f.forwardPort, [appEvent('starting api 1.19.0', { service: 'api', environment: 'staging', deployment_id: 'd-1042' })]);
    await f.createDeployment({ id: 'd-1040', service: 'web', environment: 'prod', version: '5.2.1', commit: '0c9e1aa', started_by: 'bob' });
    await f.finishDeployment('d-1040', 'succeeded');
    await f.waitStored(600, '{tag=~"app.*"}');

    const browser = await getBrowser();
    const shot = async (name, { width = 1280, height = 800, colorScheme = 'dark' }, go) => {
      const context = await browser.newContext({ viewport: { width, height }, colorScheme, reducedMotion: 'reduce' });
      context.setDefaultTimeout(15000);
      const page = await context.newPage();
      try {
        await go(page);
        await page.waitForTimeout(300);
        const file = path.join(OUT, `${name}.png`);
        await page.screenshot({ path: file });
        console.log(`wrote ${file}`);
      } finally {
        await context.close();
      }
    };
    const live = async (page) => {
      await page.goto(f.url('/'));
      await waitStatus(page, 'Live');
      const fresh = Array.from({ length: 40 }, (_, i) => {
        const l = sampleLine(1000 + i);
        return appEvent(l.message, { service: l.service, level: l.level });
      });
      await sendEvents(f.forwardPort, fresh);
      await waitFor(async () => ((await shownRows(page)) || []).length >= 20, 15000, 'lines in the live view');
      // One row expanded, to show a record's fields.
      await page.getByTestId('line').filter({ hasText: 'upstream timeout' }).first().click().catch(() => {});
    };
    await shot('live', {}, live);
    await shot('live-light', { colorScheme: 'light' }, async (page) => {
      await live(page);
      if ((await page.locator('html').getAttribute('data-theme')) !== 'light') {
        await page.getByRole('button', { name: 'Toggle theme' }).click();
      }
      assert.equal(await page.locator('html').getAttribute('data-theme'), 'light');
    });
    await shot('live-narrow', { width: 390, height: 844 }, live);
    await shot('search', { height: 900 }, async (page) => {
      await page.goto(f.url('/search?query=%7Btag%3D~%22app.*%22%7D&since=1h'));
      const total = page.getByTestId('histogram-total');
      await waitFor(async () => (firstNumber(await total.textContent({ timeout: 1000 })) || 0) > 0
        || (await page.getByRole('button', { name: 'Run', exact: true }).click().then(() => false)), 15000, 'the histogram');
      await waitFor(async () => firstNumber(await page.getByTestId('result-count').textContent({ timeout: 1000 })) > 0, 15000, 'results');
    });
    await shot('deployments', {}, async (page) => {
      await page.goto(f.url('/deployments'));
      await waitFor(async () => (await page.getByTestId('deployment-row').count()) >= 3, 15000, 'three deployments');
    });
    await shot('deployment', { height: 900 }, async (page) => {
      await page.goto(f.url('/deployments/d-1041'));
      await waitFor(async () => (await page.getByTestId('deployment-end').count()) > 0, 15000, 'the end banner');
    });
  } finally {
    await closeBrowser();
    await f.stop();
    f.removeDir();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
