// Runs before the page is drawn (a classic script in <head>), so the remembered theme
// applies from the first paint, without a flash of the other one.
(function () {
  var theme = null;
  try { theme = localStorage.getItem('flumen-theme'); } catch (e) { /* storage may be off */ }
  if (theme !== 'dark' && theme !== 'light') {
    theme = window.matchMedia && window.matchMedia('(prefers-color-scheme: light)').matches ? 'light' : 'dark';
  }
  document.documentElement.setAttribute('data-theme', theme);
})();
