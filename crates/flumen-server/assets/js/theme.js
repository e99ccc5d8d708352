// The theme switch: `data-theme` on <html>, remembered in localStorage. The first value is
// set by theme-init.js before the first paint.

const KEY = 'flumen-theme';

export function currentTheme() {
  return document.documentElement.dataset.theme === 'light' ? 'light' : 'dark';
}

export function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  try { localStorage.setItem(KEY, theme); } catch { /* not remembered, still switched */ }
}

export function initThemeToggle(button) {
  // The name stays "Toggle theme"; the tooltip says where it goes.
  const sync = () => { button.title = `Switch to the ${currentTheme() === 'dark' ? 'light' : 'dark'} theme`; };
  sync();
  button.addEventListener('click', () => {
    setTheme(currentTheme() === 'dark' ? 'light' : 'dark');
    sync();
  });
}
