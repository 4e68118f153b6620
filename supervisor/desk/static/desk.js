// The custody desk's only script: live view updates over server-sent events, the alert
// feed, the critical-alert tone, and actions posted without a page reload.
(function () {
  "use strict";
  var body = document.body;
  var view = document.getElementById("view");
  if (!view) { return; }
  var feed = document.getElementById("feed");
  var banner = document.getElementById("banner");
  var result = document.getElementById("result");
  var pending = null;
  var audio = null, beeping = null;

  function editing() {
    var a = document.activeElement;
    return a && view.contains(a) && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName) && a.value;
  }
  function apply(html) {
    if (editing()) { pending = html; return; }
    pending = null;
    view.innerHTML = html;
  }
  document.addEventListener("focusout", function () {
    setTimeout(function () { if (pending !== null && !editing()) { apply(pending); } }, 0);
  });

  function beep() {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      var o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = 880; g.gain.value = 0.2;
      o.connect(g); g.connect(audio.destination);
      o.start(); o.stop(audio.currentTime + 0.35);
    } catch (e) { /* no audio device: the red tile still shows it */ }
  }
  function tone(on) {
    body.classList.toggle("tone", !!on);
    if (on && !beeping) { beep(); beeping = setInterval(beep, 1500); }
    if (!on && beeping) { clearInterval(beeping); beeping = null; }
  }

  var q = "view=" + encodeURIComponent(body.dataset.view) +
          "&d=" + encodeURIComponent(body.dataset.extra || "");
  var es = new EventSource("/events?" + q);
  es.addEventListener("open", function () { banner.hidden = true; });
  es.addEventListener("error", function () {
    banner.hidden = false;
    if (es.readyState === EventSource.CLOSED) {  // refused (signed out): back to sign-in
      setTimeout(function () { location.reload(); }, 1000);
    }
  });
  es.addEventListener("expired", function () { es.close(); location.reload(); });
  es.addEventListener("view", function (ev) {
    var d = JSON.parse(ev.data);
    apply(d.html);
    tone(d.tone);
    body.dataset.count = d.count;
  });
  es.addEventListener("alert", function (ev) {
    var d = JSON.parse(ev.data);
    var li = document.createElement("li");
    li.className = "sev " + (d.severity || "");
    li.dataset.alert = d.id;
    li.textContent = d.text;
    feed.insertBefore(li, feed.firstChild);
    while (feed.children.length > 100) { feed.removeChild(feed.lastChild); }
  });

  document.addEventListener("submit", function (ev) {
    var f = ev.target;
    if (!f.classList || !f.classList.contains("act")) { return; }
    ev.preventDefault();
    var data = new URLSearchParams(new FormData(f));
    // getAttribute: a field named "action" would shadow the form property
    fetch(f.getAttribute("action"), {method: "POST", body: data, credentials: "same-origin",
                     headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (r) {
        result.className = r.ok ? "ok" : "err";
        result.textContent = (r.ok ? "\u2713 " : "\u2717 ") + (r.ok ? f.querySelector("button").textContent : r.error);
        if (r.ok) { f.reset(); }
      })
      .catch(function (e) { result.className = "err"; result.textContent = String(e); });
  });
  document.addEventListener("click", function (ev) {
    if (ev.target && ev.target.classList && ev.target.classList.contains("print")) { window.print(); }
  });
})();
