// handoff dashboard: live updates over server-sent events, and the mode
// switches, which call the control API under /api/ as the CLI does.
// The server renders every part of the page; this script only swaps in the
// parts it sends again, and keeps the times readable.
(function () {
  'use strict';

  var csrf = meta('handoff-csrf');
  var actor = meta('handoff-actor');
  var maxEvents = 200;

  function meta(name) {
    var m = document.querySelector('meta[name="' + name + '"]');
    return m ? m.content : '';
  }

  // ---- times: shown in the browser's time zone, and how long ago ----

  function pad(n) { return (n < 10 ? '0' : '') + n; }
  function clock(d) { return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()); }
  function span(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) { return s + 's'; }
    var m = Math.floor(s / 60);
    if (m < 60) { return m + 'm' + pad(s % 60) + 's'; }
    var h = Math.floor(m / 60);
    if (h < 48) { return h + 'h' + pad(m % 60) + 'm'; }
    return Math.floor(h / 24) + 'd' + (h % 24) + 'h';
  }

  function showTimes(root) {
    var now = Date.now();
    root.querySelectorAll('time[datetime]').forEach(function (t) {
      var d = new Date(t.getAttribute('datetime'));
      if (isNaN(d)) { return; }
      if (!t.title) { t.title = d.toLocaleString(); }
      if (t.hasAttribute('data-elapsed')) {
        t.textContent = 'for ' + span(now - d);
      } else if (t.hasAttribute('data-ago')) {
        t.textContent = clock(d) + ' (' + span(now - d) + ' ago)';
      } else {
        t.textContent = clock(d);
      }
    });
  }

  // ---- swapping in the parts the server sends ----

  // swap replaces the element with fresh's id by fresh, keeping what the
  // user is doing there: text typed but not sent, the focus, open details.
  function swap(fresh) {
    var old = fresh.id && document.getElementById(fresh.id);
    if (!old) { return; }
    old.querySelectorAll('input[id]').forEach(function (inp) {
      var repl = fresh.querySelector('#' + CSS.escape(inp.id));
      if (repl && inp.value !== inp.defaultValue) { repl.value = inp.value; }
    });
    old.querySelectorAll('details[id]').forEach(function (det) {
      var repl = fresh.querySelector('#' + CSS.escape(det.id));
      if (repl && det.open) { repl.open = true; }
    });
    var focused = document.activeElement;
    var refocus = focused && focused.id && old.contains(focused) ? focused : null;
    var sel = refocus && refocus.selectionStart != null ? [refocus.selectionStart, refocus.selectionEnd] : null;
    showTimes(fresh);
    old.replaceWith(fresh);
    if (refocus) {
      var again = document.getElementById(refocus.id);
      if (again) {
        again.focus();
        if (sel && again.setSelectionRange) { again.setSelectionRange(sel[0], sel[1]); }
      }
    }
  }

  function parse(html) {
    var tpl = document.createElement('template');
    tpl.innerHTML = html;
    return Array.prototype.slice.call(tpl.content.children);
  }

  function onStatus(ev) {
    parse(ev.data).forEach(swap);
  }

  function onLog(ev) {
    var list = document.getElementById('log');
    var items = parse(ev.data);
    for (var i = items.length - 1; i >= 0; i--) {
      var li = items[i];
      if (list.querySelector('li[data-id="' + li.dataset.id + '"]')) { continue; }
      li.classList.add('new');
      showTimes(li);
      list.insertBefore(li, list.firstChild);
    }
    while (list.children.length > maxEvents) { list.removeChild(list.lastChild); }
  }

  // ---- the event stream ----

  var live = document.getElementById('live');
  function setLive(state, text) {
    if (!live) { return; }
    live.dataset.state = state;
    live.textContent = text;
  }

  function connect() {
    var list = document.getElementById('log');
    var es = new EventSource('/events?after=' + encodeURIComponent(list ? list.dataset.after : '0'));
    es.onopen = function () { setLive('live', 'live'); };
    es.addEventListener('status', onStatus);
    es.addEventListener('log', onLog);
    es.addEventListener('expired', function () { es.close(); location.href = '/login'; });
    es.onerror = function () {
      setLive('reconnecting', 'reconnecting…');
      if (es.readyState !== EventSource.CLOSED) { return; } // the browser retries by itself
      // Refused (401 or 503): find out which, then log in again or retry.
      fetch('/api/status', { credentials: 'same-origin' }).then(function (r) {
        if (r.status === 401) { location.href = '/login'; return; }
        setTimeout(connect, 3000);
      }, function () { setTimeout(connect, 3000); });
    };
  }

  // ---- the switches ----

  var flash = document.getElementById('flash');
  var flashTimer = null;
  function say(text, isError) {
    if (!flash) { return; }
    flash.textContent = text;
    flash.classList.toggle('error', !!isError);
    flash.hidden = false;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(function () { flash.hidden = true; }, isError ? 15000 : 4000);
  }

  function request(b) {
    var mode = b.dataset.mode;
    var body = { actor: actor };
    if (b.dataset.app) { body.app = b.dataset.app; }
    if (b.dataset.on) { body.on = b.dataset.on === 'true'; }
    if (mode === 'readonly' && body.on && b.dataset.banner) {
      var input = document.getElementById(b.dataset.banner);
      if (input && input.value.trim()) { body.banner = input.value.trim(); }
    }
    return { mode: mode, body: body };
  }

  function act(b) {
    var req = request(b);
    var scope = req.body.app || 'all apps';
    b.setAttribute('aria-busy', 'true');
    b.disabled = true;
    fetch('/api/' + req.mode, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-Handoff-CSRF': csrf },
      body: JSON.stringify(req.body)
    }).then(function (r) {
      if (r.status === 401) { location.href = '/login'; return null; }
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) { say(scope + ': ' + (j.error || r.statusText), true); return; }
        say(scope + ': ' + describe(req));
        var input = req.body.banner && document.getElementById(b.dataset.banner);
        if (input) { input.defaultValue = input.value; }
      });
    }, function (err) {
      say(scope + ': handoff did not answer (' + err.message + ')', true);
    }).finally(function () {
      b.removeAttribute('aria-busy');
      b.disabled = false;
    });
  }

  function describe(req) {
    switch (req.mode) {
      case 'readonly': return 'read-only ' + (req.body.on ? 'on' : 'off');
      case 'maintenance': return 'maintenance ' + (req.body.on ? 'on' : 'off');
      case 'pause': return 'paused';
      case 'resume': return 'resumed';
    }
    return req.mode;
  }

  document.addEventListener('click', function (e) {
    var b = e.target.closest('button[data-mode]');
    if (!b || b.disabled) { return; }
    e.preventDefault();
    act(b);
  });
  // Enter in a banner field switches read-only on with that banner.
  document.addEventListener('keydown', function (e) {
    if (e.key !== 'Enter' || !e.target.matches('input[id^="banner-"]')) { return; }
    var b = document.querySelector('button[data-banner="' + e.target.id + '"][data-on="true"]');
    if (b) { e.preventDefault(); act(b); }
  });

  showTimes(document);
  setInterval(function () { showTimes(document); }, 1000);
  if (document.getElementById('log')) { connect(); }
})();
