// Applied before the page paints: the theme the user chose, else the system's.
(function () {
  var chosen = null;
  try { chosen = localStorage.getItem("jobforge-theme"); } catch (e) { /* storage off */ }
  if (chosen === "dark" || chosen === "light") document.documentElement.dataset.theme = chosen;
})();
