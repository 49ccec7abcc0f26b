"use strict";
(function () {
  var cards = Array.prototype.slice.call(document.querySelectorAll(".card"));
  var boxes = Array.prototype.slice.call(document.querySelectorAll("input[name=state]"));
  var q = document.getElementById("q");
  var shown = document.getElementById("shown");

  function apply() {
    var on = {};
    boxes.forEach(function (b) { if (b.checked) { on[b.value] = true; } });
    var text = q.value.trim().toLowerCase();
    var n = 0;
    cards.forEach(function (c) {
      var show = !!on[c.dataset.state] && (text === "" || c.dataset.search.indexOf(text) >= 0);
      c.hidden = !show;
      if (show) { n += 1; }
    });
    shown.textContent = n + " of " + cards.length + " shown";
    return n;
  }
  boxes.forEach(function (b) { b.addEventListener("change", apply); });
  q.addEventListener("input", apply);

  function visible() {
    return cards.filter(function (c) { return !c.hidden; }).map(function (c) { return c.id.slice(4); });
  }

  // ?selftest: wait for every video's metadata, exercise the filters, write the results.
  var params = new URLSearchParams(location.search);
  if (!params.has("selftest")) { return; }
  var videos = Array.prototype.slice.call(document.querySelectorAll("video"));
  videos.forEach(function (v) {
    if (v.preload === "none") { v.preload = "metadata"; v.load(); }
  });
  function metadata(v) {
    return new Promise(function (resolve) {
      if (v.readyState >= 1 || v.error) { resolve(); return; }
      v.addEventListener("loadedmetadata", function () { resolve(); }, { once: true });
      v.addEventListener("error", function () { resolve(); }, { once: true });
    });
  }
  var limit = new Promise(function (resolve) { setTimeout(resolve, 20000); });
  Promise.race([Promise.all(videos.map(metadata)), limit]).then(function () {
    var result = {
      cards: cards.length,
      order: cards.map(function (c) { return c.dataset.state; }),
      videos: videos.map(function (v) {
        return {
          src: v.getAttribute("src"),
          duration: isFinite(v.duration) ? v.duration : null,
          error: v.error ? v.error.code : null
        };
      }),
      filters: []
    };
    function step(states, text) {
      boxes.forEach(function (b) { b.checked = states === null || states.indexOf(b.value) >= 0; });
      q.value = text;
      var n = apply();
      result.filters.push({ states: states, q: text, shown: n, ids: visible(), label: shown.textContent });
    }
    step(null, "");
    step(boxes.filter(function (b) { return b.value !== "done"; }).map(function (b) { return b.value; }), "");
    step(["done"], "");
    var probe = params.get("q") || (cards.length ? cards[0].dataset.search.split(" ")[0] : "");
    step(null, probe);
    step(null, "no prompt says this \u2603");
    step(null, "");
    document.getElementById("selftest").textContent = JSON.stringify(result);
    document.title = "selftest done";
  });
})();
