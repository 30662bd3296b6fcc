// Keeps the job page current without reloading: polls the status endpoint,
// less often while the tab is hidden, and stops at a final state.
(function () {
  "use strict";
  var root = document.getElementById("job");
  if (!root) return;
  var url = root.dataset.statusUrl;
  var VISIBLE_DELAY = 1000, HIDDEN_DELAY = 15000, MAX_DELAY = 60000;
  var timer = null;
  var failures = 0;
  var done = false;

  function $(id) { return document.getElementById(id); }
  function show(id, visible) { $(id).hidden = !visible; }

  function renderEvents(events) {
    var list = $("job-events");
    list.textContent = "";
    events.forEach(function (e) {
      var li = document.createElement("li");
      var t = document.createElement("time");
      t.dateTime = e.at;
      t.textContent = e.time;  // formatted by the server, as on a reload: same format, same zone
      var s = document.createElement("strong");
      s.textContent = e.to;
      li.append(t, " ", s, " — " + e.message);
      list.appendChild(li);
    });
  }

  function renderSeed(s) {
    var seed = $("job-seed");
    seed.textContent = s.seed_used;
    if (s.seed_random) {
      var note = document.createElement("span");
      note.className = "dim";
      note.textContent = "(picked at random)";
      seed.append(" ", note);
    }
  }

  function render(s) {
    var status = $("job-status");
    status.textContent = s.status_label;
    status.className = "badge status-" + s.status;
    root.dataset.status = s.status;
    $("job-progress").value = s.progress;
    $("job-percent").textContent = Math.round(s.progress * 100) + "%";
    show("job-progress-box", !s.final);
    // A failure's message is shown once, in the problem box.
    $("job-message").textContent = s.status_message === s.error_message ? "" : (s.status_message || "");
    show("job-queue", s.queue_position !== null);
    $("job-queue-n").textContent = s.queue_position === null ? "" : s.queue_position;
    $("job-error").textContent = s.error_message || "";
    show("job-error", !!s.error_message);
    $("job-advice").textContent = s.advice || "";
    show("job-problem", !!s.advice);
    if (s.seed_used) renderSeed(s);
    renderEvents(s.events);
    show("job-cancel", s.cancellable);
    show("job-rerun", s.final);
    show("job-rerun-help", s.final);
    $("rerun-same").textContent = (s.status === "failed" || s.status === "cancelled") ? "Try again" : "Run again";
    if (s.status === "completed" && s.video_url) {
      var video = $("job-video");
      if (!video.getAttribute("src")) {
        video.poster = s.poster_url;
        video.muted = true;  // the attribute sets only the default; autoplay needs it muted now
        video.src = s.video_url;
        var playing = video.play();  // autoplay is asked for again: some browsers skip it for a late src
        if (playing && playing.catch) playing.catch(function () {});
      }
      $("job-download").href = s.download_url;
      $("job-facts").textContent = s.frames + " frames, " + Number(s.duration).toFixed(1) + " s";
      show("job-result", true);
      show("job-download-line", true);
      show("job-input", false);
    }
    if (typeof s.balance === "number") {
      var balance = $("credit-balance");
      if (balance) balance.textContent = s.balance;
    }
  }

  function schedule() {
    var delay = Math.min((document.hidden ? HIDDEN_DELAY : VISIBLE_DELAY) * Math.pow(2, failures), MAX_DELAY);
    timer = setTimeout(tick, delay);
  }

  function tick() {
    timer = null;
    fetch(url, {headers: {Accept: "application/json"}, credentials: "same-origin"})
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (s) {
        failures = 0;
        render(s);
        if (s.final) done = true; else schedule();
      })
      .catch(function () { failures += 1; schedule(); });
  }

  // Back to the tab: look at once instead of waiting out the slow interval.
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && timer !== null && !done) { clearTimeout(timer); tick(); }
  });
  if (root.dataset.status && ["completed", "failed", "cancelled", "expired"].indexOf(root.dataset.status) < 0) tick();
})();
