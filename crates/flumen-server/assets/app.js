// The page's entry module: routing between the views (history.pushState / popstate), the
// header (navigation, theme, status) and the keyboard shortcuts that work everywhere.

import { isTyping } from './js/dom.js';
import { initStatus, setStatus } from './js/status.js';
import { initThemeToggle } from './js/theme.js';
import * as live from './js/views/live.js';
import * as search from './js/views/search.js';
import * as deploymentList from './js/views/deployments.js';
import * as deploymentPage from './js/views/deployment.js';

const main = document.getElementById('view');
let current = null; // what the mounted view returned: {unmount, onSpace?, focusQuery?}

/** The view for a path, and the nav entry it belongs to. */
function resolve(path) {
  if (path === '/' || path === '') return { view: live, nav: 'live' };
  if (path === '/search') return { view: search, nav: 'search' };
  if (path === '/deployments') return { view: deploymentList, nav: 'deployments' };
  const m = /^\/deployments\/([^/]+)$/.exec(path);
  if (m) return { view: deploymentPage, nav: 'deployments', arg: decodeURIComponent(m[1]) };
  return null;
}

function route() {
  current?.unmount();
  current = null;
  main.replaceChildren();
  setStatus('', 'idle');
  const target = resolve(location.pathname);
  for (const a of document.querySelectorAll('nav[aria-label="Views"] a')) {
    if (target && a.dataset.view === target.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!target) {
    main.textContent = `Nothing at ${location.pathname}.`;
    return;
  }
  current = target.view.mount(main, { navigate, arg: target.arg }) || null;
}

export function navigate(href) {
  history.pushState(null, '', href);
  route();
}

/** Same-origin links move between views without reloading the page. */
function onLinkClick(e) {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/') || url.pathname.startsWith('/assets/')) return;
  if (url.hash && url.pathname === location.pathname) return; // e.g. the skip link
  e.preventDefault();
  navigate(url.pathname + url.search);
}

/** `/` focuses the query, space pauses, Escape leaves an input. */
function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (isTyping(e.target)) {
    if (e.key === 'Escape') e.target.blur();
    return;
  }
  if (e.key === '/' && current?.focusQuery) {
    e.preventDefault();
    current.focusQuery();
  } else if (e.key === ' ' && current?.onSpace && !e.target.closest?.('button, a, summary, details')) {
    e.preventDefault();
    current.onSpace();
  }
}

initStatus(document.querySelector('[data-testid="connection"]'));
initThemeToggle(document.querySelector('.theme-toggle'));
document.addEventListener('click', onLinkClick);
document.addEventListener('keydown', onKey);
window.addEventListener('popstate', route);
route();
