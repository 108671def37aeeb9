// Redis health panel: refresh the panel in place every few seconds, unless paused.
// No framework and no network beyond this site; the pause survives reloads.
(function () {
  "use strict";
  var panel = document.getElementById("drr-panel");
  var button = document.getElementById("drr-pause");
  var stamp = document.getElementById("drr-updated");
  if (!panel || !button || !window.fetch) { return; }
  var every = Math.max(parseFloat(panel.dataset.refresh) || 5, 1) * 1000;
  var key = "drr-health-paused";
  var paused = false;
  try { paused = window.localStorage.getItem(key) === "1"; } catch (e) { /* private mode */ }
  var timer = null;

  function show() {
    button.textContent = paused ? "Resume auto-refresh" : "Pause auto-refresh";
    button.setAttribute("aria-pressed", paused ? "true" : "false");
    panel.dataset.paused = paused ? "1" : "0";
    if (paused) { stamp.textContent = "auto-refresh paused"; }
  }

  function schedule() {
    window.clearTimeout(timer);
    if (!paused) { timer = window.setTimeout(refresh, every); }
  }

  function refresh() {
    fetch(panel.dataset.url, { credentials: "same-origin", headers: { "X-Requested-With": "XMLHttpRequest" } })
      .then(function (response) {
        if (response.redirected) { window.location.reload(); throw new Error("signed out"); }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        if (paused) { return; }
        panel.innerHTML = html;
        stamp.textContent = "updated " + new Date().toLocaleTimeString();
        stamp.classList.remove("drr-stale");
        panel.dataset.refreshes = String((parseInt(panel.dataset.refreshes, 10) || 0) + 1);
      })
      .catch(function (error) {
        stamp.textContent = "refresh failed (" + error.message + "); retrying";
        stamp.classList.add("drr-stale");
      })
      .then(schedule);
  }

  button.hidden = false;
  button.addEventListener("click", function () {
    paused = !paused;
    try { window.localStorage.setItem(key, paused ? "1" : "0"); } catch (e) { /* private mode */ }
    show();
    if (!paused) { stamp.textContent = ""; }
    schedule();
  });
  show();
  schedule();
})();
