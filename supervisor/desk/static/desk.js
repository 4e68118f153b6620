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
  var audio = null, beeping = null;

  // Replace only what changed: a queue of a hundred alerts re-rendered whole on every push
  // would keep the browser busy laying out rows that did not change.
  function morph(cur, next) {
    if (cur.nodeType !== next.nodeType || cur.nodeName !== next.nodeName) {
      cur.replaceWith(next); return;
    }
    if (cur.nodeType !== 1) {
      if (cur.nodeValue !== next.nodeValue) { cur.nodeValue = next.nodeValue; }
      return;
    }
    if (cur.isEqualNode(next)) { return; }
    var attrsSame = cur.attributes.length === next.attributes.length &&
      Array.prototype.every.call(next.attributes, function (a) {
        return cur.getAttribute(a.name) === a.value; });
    var key = next.getAttribute("data-alert") || next.getAttribute("data-room") ||
              next.getAttribute("data-detainee");
    if (!attrsSame || (key && cur.getAttribute("data-alert") !== next.getAttribute("data-alert"))
        || /^(INPUT|SELECT|TEXTAREA|FORM)$/.test(cur.nodeName)) {
      cur.replaceWith(next); return;
    }
    var a = Array.prototype.slice.call(cur.childNodes);
    var b = Array.prototype.slice.call(next.childNodes);
    for (var i = 0; i < b.length; i++) {
      if (i < a.length) { morph(a[i], b[i]); } else { cur.appendChild(b[i]); }
    }
    for (var j = b.length; j < a.length; j++) { cur.removeChild(a[j]); }
  }
  // Nodes that did not change are kept, so what someone is typing in a form survives an
  // update (an input's typed value is not an attribute: the node compares equal).
  function apply(html) {
    var t = document.createElement("template");
    t.innerHTML = html;
    var box = document.createElement("main");
    box.id = view.id;
    box.appendChild(t.content);
    morph(view, box);
  }

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

  // A fetched, hash-checked evidence clip: a <video> when this browser plays its format,
  // else the still frame the supervisor took from it; the journal entry of the view beside it.
  function showEvidence(r) {
    var box = document.getElementById("evidence");
    if (!box) { return; }
    box.textContent = "";
    var p = document.createElement("p");
    p.className = "journaled";
    p.textContent = r.shown || "";
    box.appendChild(p);
    var media;
    if (r.playable) {
      media = document.createElement("video");
      media.controls = true; media.muted = true; media.src = r.url;
    } else if (r.still_url) {
      media = document.createElement("img");
      media.src = r.still_url; media.alt = r.still_text || "";
      var cap = document.createElement("p");
      cap.textContent = r.still_text || "";
      box.appendChild(cap);
    }
    if (media) { media.className = "evidence-media"; box.appendChild(media); }
    var a = document.createElement("a");
    a.href = r.url; a.download = r.name || ""; a.textContent = r.download_text || r.url;
    box.appendChild(a);
    box.hidden = false;
  }

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
        if (r.ok && r.result && r.result.url) { showEvidence(r.result); }
      })
      .catch(function (e) { result.className = "err"; result.textContent = String(e); });
  });
  document.addEventListener("click", function (ev) {
    if (ev.target && ev.target.classList && ev.target.classList.contains("print")) { window.print(); }
  });
})();
