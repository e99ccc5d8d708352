'use strict';
// The frame around the views: navigation (links, aria-current, back and forward), the theme
// toggle (remembered), and the connection status.

const assert = require('node:assert/strict');
const { useBrowser, browserTest, eventually, waitStatus } = require('./harness');

useBrowser();

const current = async (page) => page.getByRole('navigation', { name: 'Views' }).getByRole('link')
  .evaluateAll((links) => links.filter((a) => a.getAttribute('aria-current') === 'page').map((a) => a.textContent.trim()));

browserTest('the navigation moves between the views, with back and forward', async ({ f, page }) => {
  await page.goto(f.url('/'));
  const nav = page.getByRole('navigation', { name: 'Views' });
  assert.ok(await page.getByRole('banner').getByText('flumen', { exact: true }).first().isVisible(), 'the product name in the header');
  await eventually(async () => assert.deepEqual(await current(page), ['Live']), 5000, 'Live current');
  await nav.getByRole('link', { name: 'Search', exact: true }).click();
  await eventually(async () => {
    assert.equal(new URL(page.url()).pathname, '/search');
    assert.deepEqual(await current(page), ['Search']);
    assert.ok(await page.getByRole('button', { name: 'Run', exact: true }).isVisible());
  }, 5000, 'the search view');
  await nav.getByRole('link', { name: 'Deployments', exact: true }).click();
  await eventually(async () => {
    assert.equal(new URL(page.url()).pathname, '/deployments');
    assert.deepEqual(await current(page), ['Deployments']);
    assert.ok(await page.getByRole('table', { name: 'Deployments' }).isVisible());
  }, 5000, 'the deployments view');
  await page.goBack();
  await eventually(async () => {
    assert.equal(new URL(page.url()).pathname, '/search');
    assert.deepEqual(await current(page), ['Search']);
    assert.ok(await page.getByRole('button', { name: 'Run', exact: true }).isVisible());
  }, 5000, 'back to the search view');
  await page.goBack();
  await eventually(async () => {
    assert.deepEqual(await current(page), ['Live']);
    assert.ok(await page.getByRole('log', { name: 'Log lines' }).isVisible());
  }, 5000, 'back to the live view');
  await page.goForward();
  await eventually(async () => assert.deepEqual(await current(page), ['Search']), 5000, 'forward to search');
});

browserTest('the theme toggle switches data-theme and is remembered', { colorScheme: 'dark' }, async ({ f, page }) => {
  await page.goto(f.url('/'));
  const html = page.locator('html');
  await eventually(async () => assert.equal(await html.getAttribute('data-theme'), 'dark'), 5000, 'dark by default when the system prefers dark');
  await page.getByRole('button', { name: 'Toggle theme' }).click();
  await eventually(async () => assert.equal(await html.getAttribute('data-theme'), 'light'), 5000, 'light after the toggle');
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  await page.reload();
  await eventually(async () => assert.equal(await html.getAttribute('data-theme'), 'light'), 5000, 'still light after a reload');
  assert.equal(await page.evaluate(() => getComputedStyle(document.body).backgroundColor), background);
  await page.getByRole('button', { name: 'Toggle theme' }).click();
  await eventually(async () => assert.equal(await html.getAttribute('data-theme'), 'dark'), 5000, 'dark again');
  assert.notEqual(await page.evaluate(() => getComputedStyle(document.body).backgroundColor), background, 'the themes look different');
});

browserTest('a light system preference gives the light theme', { colorScheme: 'light' }, async ({ f, page }) => {
  await page.goto(f.url('/deployments'));
  await eventually(async () => assert.equal(await page.locator('html').getAttribute('data-theme'), 'light'), 5000, 'light by default');
});

browserTest('at 360 px wide every view fits the width (no sideways scrolling) and keeps its controls', {
  viewport: { width: 360, height: 740 },
}, async ({ f, page }) => {
  await f.createDeployment({ id: 'd-narrow-1', service: 'checkout', environment: 'production', version: '10.20.30' });
  const fits = async (where) => {
    const { scroll, inner } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
    assert.ok(scroll <= inner + 1, `${where}: the page is ${scroll} px wide in a ${inner} px window`);
  };
  const within = async (locator, what) => {
    const box = await locator.boundingBox();
    assert.ok(box && box.x >= -1 && box.x + box.width <= 361, `${what} within the 360 px: ${JSON.stringify(box)}`);
  };
  await page.goto(f.url('/'));
  await eventually(async () => assert.ok(await page.getByRole('log', { name: 'Log lines' }).isVisible()), 10000, 'the live view');
  await waitStatus(page, 'Live');
  // The Deployment select's options (long texts) loaded.
  await eventually(async () => assert.ok((await page.getByRole('combobox', { name: 'Deployment', exact: true }).locator('option[value="d-narrow-1"]').count()) === 1), 10000, 'the Deployment options');
  await fits('live');
  await within(page.getByRole('button', { name: 'Toggle theme' }), 'Toggle theme');
  for (const name of ['Query', 'Deployment', 'Service', 'Environment', 'Level']) await within(page.getByRole('combobox', { name, exact: true }), name);
  await within(page.getByRole('searchbox', { name: 'Text', exact: true }), 'Text');
  await within(page.getByRole('button', { name: 'Pause', exact: true }), 'Pause');
  await page.goto(f.url('/search'));
  await eventually(async () => assert.ok(await page.getByRole('button', { name: 'Run', exact: true }).isVisible()), 10000, 'the search view');
  await fits('search');
  await within(page.getByRole('button', { name: 'Run', exact: true }), 'Run');
  await within(page.getByRole('combobox', { name: 'Range', exact: true }), 'Range');
  await page.goto(f.url('/deployments'));
  await eventually(async () => assert.equal(await page.getByTestId('deployment-row').count(), 1), 10000, 'the deployments view');
  await fits('deployments');
  await within(page.getByRole('link', { name: 'd-narrow-1', exact: true }), 'the deployment\'s link');

  // The longest status word ("Reconnecting…", flumen away) still fits the header.
  await page.goto(f.url('/'));
  await waitStatus(page, 'Live');
  await f.stop();
  await waitStatus(page, 'Reconnecting');
  await fits('live, reconnecting');
  await within(page.getByRole('button', { name: 'Toggle theme' }), 'Toggle theme while reconnecting');
  await f.start();
  await waitStatus(page, 'Live', 20000);
});
