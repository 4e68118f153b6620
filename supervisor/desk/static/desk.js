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
    var key = next.getAttribute("data-key");
    if (!attrsSame || (key && cur.getAttribute("data-key") !== key)
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
  function element(html) {
    var t = document.createElement("template");
    t.innerHTML = html;
    return t.content.firstElementChild;
  }
  // One keyed list (data-list) brought to the server's order: items sent are new or changed
  // (morphed in place), the others stay untouched, those no longer listed go.
  function patchList(box, p) {
    var have = {}, keep = {};
    for (var c = box.firstElementChild; c; c = c.nextElementSibling) {
      have[c.getAttribute("data-key")] = c;
    }
    p.order.forEach(function (k) { keep[k] = true; });
    Object.keys(have).forEach(function (k) { if (!keep[k]) { box.removeChild(have[k]); } });
    // First bring each sent item in (morph may replace the node), then put them in order.
    var nodes = p.order.map(function (k) {
      var node = have[k];
      if (Object.prototype.hasOwnProperty.call(p.rows, k)) {
        var next = element(p.rows[k]);
        if (node) { morph(node, next); if (!node.isConnected) { node = next; } }
        else { node = next; }
      }
      return node;
    });
    var ref = box.firstElementChild;
    nodes.forEach(function (node) {
      if (!node) { return; }
      if (node === ref) { ref = ref.nextElementSibling; } else { box.insertBefore(node, ref); }
    });
  }

  // Alert ages from data-since and the snapshot's clock (the supervisor's, which a
  // simulation may run fast): written here so a row's markup does not change every second.
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function fmtDur(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s >= 3600) { return Math.floor(s / 3600) + "h" + pad(Math.floor(s % 3600 / 60)) + "m"; }
    if (s >= 60) { return Math.floor(s / 60) + "m" + pad(s % 60) + "s"; }
    return s + "s";
  }
  function ages(now) {
    if (!now) { return; }
    var xs = view.querySelectorAll(".age[data-since]");
    for (var i = 0; i < xs.length; i++) {
      var txt = fmtDur(now - Number(xs[i].getAttribute("data-since")));
      if (xs[i].firstChild) {
        if (xs[i].firstChild.nodeValue !== txt) { xs[i].firstChild.nodeValue = txt; }
      } else { xs[i].textContent = txt; }
    }
  }
  ages(Number(body.dataset.now));

  // Updates wait for the next animation frame and are applied together: a page that fell
  // behind (a busy machine) applies only the newest whole view and the rows changed since,
  // never a backlog of intermediate ones. A hidden tab gets no frames: the timer applies them
  // (the critical-alert tone must still start).
  var pending = [], scheduled = false;
  function flush() {
    scheduled = false;
    if (!pending.length) { return; }
    var evs = pending, start = 0, lists = {}, name, j;
    pending = [];
    for (j = evs.length - 1; j >= 0; j--) { if (evs[j].kind === "view") { start = j; break; } }
    if (evs[start].kind === "view") { apply(evs[start].d.html); }
    for (j = start; j < evs.length; j++) {
      var got = evs[j].kind === "rows" ? evs[j].d.lists : {};
      for (name in got) {
        var m = lists[name] || (lists[name] = {order: [], rows: {}});
        m.order = got[name].order;
        for (var k in got[name].rows) { m.rows[k] = got[name].rows[k]; }
      }
    }
    for (name in lists) {
      var box = view.querySelector('[data-list="' + name + '"]');
      if (box) { patchList(box, lists[name]); }
    }
    var last = evs[evs.length - 1].d;
    ages(last.now);
    tone(last.tone);
    body.dataset.count = last.count;
  }
  function push(kind, ev) {
    pending.push({kind: kind, d: JSON.parse(ev.data)});
    if (scheduled) { return; }
    scheduled = true;
    requestAnimationFrame(flush);
    setTimeout(flush, 250);
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
  es.addEventListener("view", function (ev) { push("view", ev); });
  es.addEventListener("rows", function (ev) { push("rows", ev); });
  es.addEventListener("tick", function (ev) { push("tick", ev); });
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
