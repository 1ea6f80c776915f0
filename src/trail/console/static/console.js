// trail console: live deadline clocks, notice-send progress, select-all. No dependencies.
(function () {
  "use strict";
  var lang = document.body.getAttribute("data-lang") || "zh";
  var words = {
    overdue: lang === "zh" ? "已逾期" : "OVERDUE",
    met: lang === "zh" ? "已履行" : "met",
  };

  function pad(n) { return n < 10 ? "0" + n : "" + n; }

  function left(seconds) {
    var s = Math.abs(Math.floor(seconds));
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return (d ? d + "d " : "") + pad(h) + ":" + pad(m) + ":" + pad(r);
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var target = el.closest(".clock-host") || el;
      if (el.getAttribute("data-stopped")) { return; }
      var due = Date.parse(el.getAttribute("data-deadline"));
      if (isNaN(due)) { return; }
      var soon = parseFloat(el.getAttribute("data-soon-seconds") || "3600");
      var secs = (due - now) / 1000;
      var state = secs < 0 ? "overdue" : (secs <= soon ? "due_soon" : "ok");
      el.textContent = secs < 0 ? words.overdue + " +" + left(secs) : left(secs);
      ["state-ok", "state-due_soon", "state-overdue"].forEach(function (c) { target.classList.remove(c); el.classList.remove(c); });
      target.classList.add("state-" + state);
      el.classList.add("state-" + state);
      el.setAttribute("data-state", state);
    });
  }

  function progress() {
    var box = document.getElementById("send-progress");
    if (!box) { return; }
    var url = box.getAttribute("data-url");
    var bar = box.querySelector("progress"), text = box.querySelector(".progress-text");
    function poll() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (s) {
          if (bar) { bar.max = Math.max(1, s.total || 0); bar.value = s.done || 0; }
          if (text) { text.textContent = (s.done || 0) + " / " + (s.total || 0) + " · " + (s.state || ""); }
          box.setAttribute("data-state", s.state || "");
          if (s.state === "running" || s.state === "pending") { setTimeout(poll, 700); }
          else if (s.state) { box.classList.add("finished"); }
        })
        .catch(function () { setTimeout(poll, 2000); });
    }
    poll();
  }

  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
    progress();
    var all = document.getElementById("select-all");
    if (all) {
      all.addEventListener("change", function () {
        document.querySelectorAll("input.pick").forEach(function (c) { c.checked = all.checked; });
      });
    }
  });
})();
