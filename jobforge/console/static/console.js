// The console's behaviour beyond htmx: theme, relative times, polling economy, live charts and logs,
// log search, sortable tables. No inline script anywhere: the pages' CSP allows only these files.
(function () {
  "use strict";
  var POLL_MS = 2000;
  var root = document.documentElement;

  // -- theme ------------------------------------------------------------------------------
  function currentTheme() {
    return root.dataset.theme || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  }
  document.addEventListener("click", function (event) {
    if (!event.target.closest("[data-theme-toggle]")) return;
    var next = currentTheme() === "dark" ? "light" : "dark";
    root.dataset.theme = next;
    try { localStorage.setItem("jobforge-theme", next); } catch (e) { /* storage off */ }
    document.dispatchEvent(new CustomEvent("console:theme"));
  });

  // -- relative times and durations ---------------------------------------------------------
  function span(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min " + (seconds % 60) + " s";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h " + Math.floor(seconds % 3600 / 60) + " min";
    return Math.floor(seconds / 86400) + " d " + Math.floor(seconds % 86400 / 3600) + " h";
  }
  function refreshTimes(scope) {
    var now = Date.now() / 1000;
    (scope || document).querySelectorAll("[data-age]").forEach(function (el) {
      el.textContent = span(now - parseFloat(el.dataset.age)) + " ago";
    });
    (scope || document).querySelectorAll("[data-since]").forEach(function (el) {
      if (!el.dataset.since) { el.textContent = "–"; return; }
      var end = el.dataset.until ? parseFloat(el.dataset.until) : now;
      el.textContent = span(end - parseFloat(el.dataset.since));
    });
  }
  setInterval(refreshTimes, 5000);

  // -- polling: skipped while the tab is hidden; the job list sends the version it shows ---------
  document.addEventListener("htmx:confirm", function (event) {
    var trigger = event.detail.elt.getAttribute("hx-trigger") || "";
    if (document.hidden && trigger.indexOf("every") === 0) event.preventDefault();
  });
  document.addEventListener("htmx:configRequest", function (event) {
    var elt = event.detail.elt;
    if (elt.id === "job-rows" && elt.dataset.version) event.detail.headers["X-Console-Version"] = elt.dataset.version;
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var version = event.detail.xhr && event.detail.xhr.getResponseHeader("X-Console-Version");
    var rows = document.getElementById("job-rows");
    if (version && rows) rows.dataset.version = version;
  });
  // A whole list swapped in (a new search or filter) keeps the keyboard's focus on the link it was on.
  var focusedLink = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var active = document.activeElement;
    focusedLink = event.detail.target && event.detail.target.id === "job-rows" && active &&
      event.detail.target.contains(active) ? active : null;
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    refreshTimes(); bars();
    if (focusedLink && !focusedLink.isConnected && event.detail.target) keepFocus(focusedLink, event.detail.target);
    focusedLink = null;
  });
  // A poll's answer holds only the rows changed since the version sent: each replaces its row, comes in at
  // its place by creation time, or leaves (data-gone) when it no longer passes the filters.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (!xhr || !xhr.getResponseHeader("X-Console-Delta")) return;
    event.detail.shouldSwap = false;
    var body = document.getElementById("job-rows"), holder = document.createElement("tbody");
    holder.innerHTML = xhr.responseText;
    Array.prototype.slice.call(holder.rows).forEach(function (row) {
      var present = document.getElementById(row.id);
      if (row.hasAttribute("data-gone")) { if (present) present.remove(); return; }
      if (present) {
        var focused = present.contains(document.activeElement) ? document.activeElement : null;
        present.replaceWith(row);
        if (focused) keepFocus(focused, row);
        return;
      }
      var empty = body.querySelector("[data-empty]");
      if (empty) empty.remove();
      var created = parseFloat(row.querySelector("[data-age]").dataset.age), after = null;
      Array.prototype.some.call(body.rows, function (other) {
        var age = other.querySelector("[data-age]");
        if (age && parseFloat(age.dataset.age) < created) { after = other; return true; }
        return false;
      });
      body.insertBefore(row, after);
    });
    refreshTimes(body);
  });

  // A row replaced while the keyboard's focus was in it hands the focus to the same control of its successor,
  // so that a live update never drops a keyboard user's place.
  function keepFocus(old, row) {
    var href = old.getAttribute("href");
    var next = href ? row.querySelector('a[href="' + CSS.escape(href) + '"]') : null;
    if (!next) next = row.querySelector(old.tagName.toLowerCase());
    if (next) next.focus({ preventScroll: true });
  }

  // -- keyboard: "/" focuses the page's search --------------------------------------------------
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    var tag = (document.activeElement && document.activeElement.tagName) || "";
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
    var search = document.querySelector("[data-shortcut='/']") || document.getElementById("log-search");
    if (search) { event.preventDefault(); search.focus(); }
  });
  document.addEventListener("focusin", function (event) {
    if (event.target.matches("[data-select-on-focus]")) event.target.select();
  });

  // -- sortable tables and histogram bars ----------------------------------------------------------
  document.addEventListener("click", function (event) {
    var button = event.target.closest("table.sortable th button");
    if (!button) return;
    var th = button.closest("th"), table = th.closest("table"), index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = button.dataset.sort === "number";
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("th").forEach(function (other) { other.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[index], y = b.cells[index];
      x = x.dataset.value !== undefined ? x.dataset.value : x.textContent;
      y = y.dataset.value !== undefined ? y.dataset.value : y.textContent;
      var order = numeric ? (parseFloat(x) || 0) - (parseFloat(y) || 0) : x.localeCompare(y);
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
  function bars() {
    document.querySelectorAll(".bar[data-share]").forEach(function (bar) {
      bar.style.width = (parseFloat(bar.dataset.share) * 100).toFixed(1) + "%";
    });
  }

  // -- log search ------------------------------------------------------------------------------------
  function logFilter() {
    var input = document.getElementById("log-search");
    return input ? input.value.trim().toLowerCase() : "";
  }
  function applyLogFilter(lines) {
    var wanted = logFilter();
    lines.forEach(function (li) {
      li.hidden = wanted !== "" && li.textContent.toLowerCase().indexOf(wanted) < 0;
    });
  }
  document.addEventListener("input", function (event) {
    if (event.target.id !== "log-search") return;
    applyLogFilter(document.querySelectorAll("#log-lines li"));
  });

  // -- a job's live metrics and log ---------------------------------------------------------------------
  function cssVar(name) { return getComputedStyle(root).getPropertyValue(name).trim(); }

  function Charts(container) {
    this.container = container;
    this.series = {};  // name → {xs, ys, byStep, figure, plot}
  }
  Charts.prototype.chart = function (name, byStep) {
    var s = this.series[name];
    if (!s) {
      var empty = this.container.querySelector("[data-charts-empty]");
      if (empty) empty.remove();
      var figure = document.createElement("figure");
      figure.className = "chart";
      figure.dataset.metric = name;
      var caption = document.createElement("figcaption");
      caption.innerHTML = "<span class='name'></span> <span class='last'></span>";
      caption.querySelector(".name").textContent = name;
      figure.appendChild(caption);
      var holder = document.createElement("div");
      holder.className = "plot";
      figure.appendChild(holder);
      this.container.appendChild(figure);
      s = this.series[name] = {xs: [], ys: [], byStep: byStep, figure: figure, holder: holder, plot: null};
    }
    return s;
  };
  Charts.prototype.add = function (name, value, step, timestamp) {
    var s = this.chart(name, step !== null);
    var x = s.byStep && step !== null ? step : timestamp;
    var i = s.xs.length;
    while (i > 0 && s.xs[i - 1] > x) i--;  // points arrive in order but for a rare late one
    s.xs.splice(i, 0, x);
    s.ys.splice(i, 0, value);
    s.figure.dataset.points = String(s.xs.length);
    s.figure.querySelector(".last").textContent = Number(value).toPrecision(4);
    s.dirty = true;
  };
  // A whole series at once (an endpoint's per-minute sums, whose last minute may still grow).
  Charts.prototype.set = function (name, xs, ys) {
    var s = this.chart(name, false);
    s.xs = xs;
    s.ys = ys;
    s.figure.dataset.points = String(xs.length);
    s.figure.querySelector(".last").textContent = ys.length ? Number(ys[ys.length - 1]).toPrecision(4) : "";
    s.dirty = true;
  };
  Charts.prototype.draw = function () {
    var self = this;
    Object.keys(this.series).forEach(function (name) {
      var s = self.series[name];
      if (!s.dirty || typeof uPlot === "undefined") return;
      s.dirty = false;
      if (!s.plot) s.plot = self.make(name, s);
      else s.plot.setData([s.xs, s.ys]);
    });
  };
  Charts.prototype.make = function (name, s) {
    var ink = cssVar("--muted"), grid = cssVar("--rule");
    var axis = {stroke: ink, grid: {stroke: grid, width: 1}, ticks: {stroke: grid, width: 1}};
    return new uPlot({
      width: Math.max(240, s.holder.clientWidth), height: 180,
      scales: {x: {time: !s.byStep}},
      legend: {show: false},
      cursor: {drag: {x: false, y: false}},
      axes: [Object.assign({label: s.byStep ? "step" : ""}, axis), axis],
      series: [{}, {label: name, stroke: cssVar("--accent"), width: 2, points: {show: s.xs.length < 40}}],
    }, [s.xs, s.ys], s.holder);
  };
  Charts.prototype.redraw = function () {
    var self = this;
    Object.keys(this.series).forEach(function (name) {
      var s = self.series[name];
      if (s.plot) { s.plot.destroy(); s.plot = null; s.dirty = true; }
    });
    this.draw();
  };
  Charts.prototype.resize = function () {
    var self = this;
    Object.keys(this.series).forEach(function (name) {
      var s = self.series[name];
      if (s.plot) s.plot.setSize({width: Math.max(240, s.holder.clientWidth), height: 180});
    });
  };

  function when(epoch) { return new Date(epoch * 1000).toISOString().replace(".000Z", "Z"); }

  function follow(container) {
    var charts = new Charts(container);
    var log = document.getElementById("log-lines"), count = document.getElementById("log-count");
    var lastMetric = 0, lastLog = 0, lines = 0, ended = false, timer = null;
    document.addEventListener("console:theme", function () { charts.redraw(); });
    addEventListener("resize", function () { charts.resize(); });

    function poll() {
      timer = null;
      if (document.hidden && !ended) { timer = setTimeout(poll, POLL_MS); return; }
      var url = container.dataset.updates + "?metrics_after=" + lastMetric + "&logs_after=" + lastLog;
      fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (response) { if (!response.ok) throw new Error(response.status); return response.json(); })
        .then(function (update) {
          update.metrics.forEach(function (m) { lastMetric = m[0]; charts.add(m[1], m[2], m[3], m[4]); });
          charts.draw();
          if (update.logs.length) {
            var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
            var added = [];
            update.logs.forEach(function (entry) {
              lastLog = entry[0];
              var li = document.createElement("li"), time = document.createElement("time");
              time.textContent = when(entry[1]);
              li.appendChild(time);
              li.appendChild(document.createTextNode(" " + entry[2]));
              log.appendChild(li);
              added.push(li);
            });
            lines += update.logs.length;
            count.textContent = String(lines);
            applyLogFilter(added);
            if (atBottom) log.scrollTop = log.scrollHeight;
          }
          var more = update.metrics.length > 0 || update.logs.length > 0;
          // Once the job has ended, read until nothing new comes, then stop.
          if (update.terminal && !more) { ended = true; container.dataset.terminal = "true"; return; }
          timer = setTimeout(poll, more && update.terminal ? 0 : POLL_MS);
        })
        .catch(function () { timer = setTimeout(poll, POLL_MS * 2); });
    }
    poll();
  }

  // -- an endpoint's invocation metrics, read again every few polls ------------------------------------
  function followEndpoint(container) {
    var charts = new Charts(container);
    document.addEventListener("console:theme", function () { charts.redraw(); });
    addEventListener("resize", function () { charts.resize(); });
    function poll() {
      if (document.hidden) { setTimeout(poll, POLL_MS * 5); return; }
      fetch(container.dataset.endpointMetrics, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (response) { if (!response.ok) throw new Error(response.status); return response.json(); })
        .then(function (update) {
          update.series.forEach(function (s) { charts.set(s.chart + " · " + s.variant, s.timestamps, s.values); });
          charts.draw();
          setTimeout(poll, POLL_MS * 5);
        })
        .catch(function () { setTimeout(poll, POLL_MS * 10); });
    }
    poll();
  }

  function start() {
    refreshTimes();
    bars();
    var charts = document.getElementById("charts");
    if (charts && charts.dataset.updates) follow(charts);
    if (charts && charts.dataset.endpointMetrics) followEndpoint(charts);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
