// rightsd SLA dashboard. Plain script, no dependencies; served from the daemon under a CSP that allows only
// scripts and styles from this origin. The token lives in sessionStorage and goes out only as a bearer header.
(function () {
  'use strict';

  var REFRESH_MS = 30000;
  var HORIZON_DAYS = 45;
  var PAGE_LIMIT = 500;
  var MAX_PAGES = 20;            // per status: 10,000 open requests at most
  var LIST_SHOWN = 200;          // rows shown in the request table
  var OPEN_STATUSES = ['received', 'verifying', 'in_progress'];
  var TYPES = ['access', 'delete', 'correct', 'opt_out', 'limit'];
  var TYPE_LABEL = {access: 'Access (know)', delete: 'Delete', correct: 'Correct', opt_out: 'Opt-out of sale/sharing', limit: 'Limit sensitive PI'};
  var STATE_LABEL = {on_track: 'On track', at_risk: 'At risk', breached: 'Breached', met: 'Met', missed: 'Missed'};
  var STORAGE_KEY = 'rightsd.dashboard.token';

  var timer = null;
  var paused = false;
  var inFlight = false;
  var lastAnnounced = '';
  var lastItems = [];
  var lastToday = null;
  var detailOpener = null;

  function $(id) { return document.getElementById(id); }

  function text(el, value) { el.textContent = value == null ? '' : String(value); return el; }

  function make(tag, attrs, content) {
    var el = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (content != null) el.textContent = String(content);
    return el;
  }

  function svg(tag, attrs, content) {
    var el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (content != null) el.textContent = String(content);
    return el;
  }

  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

  function getToken() {
    try { return sessionStorage.getItem(STORAGE_KEY) || ''; } catch (e) { return ''; }
  }
  function setToken(t) {
    try { if (t) sessionStorage.setItem(STORAGE_KEY, t); else sessionStorage.removeItem(STORAGE_KEY); } catch (e) { /* private mode */ }
  }

  // Dates are the daemon's calendar dates (YYYY-MM-DD); arithmetic in UTC so that no local offset shifts them.
  function parseDay(s) { var p = s.split('-'); return Date.UTC(+p[0], +p[1] - 1, +p[2]); }
  function formatDay(ms) { return new Date(ms).toISOString().slice(0, 10); }
  function addDays(day, n) { return formatDay(parseDay(day) + n * 86400000); }
  function daysBetween(a, b) { return Math.round((parseDay(b) - parseDay(a)) / 86400000); }
  var WEEKDAY = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  var MONTH = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  function longDay(day) {
    var d = new Date(parseDay(day));
    return WEEKDAY[d.getUTCDay()] + ' ' + d.getUTCDate() + ' ' + MONTH[d.getUTCMonth()] + ' ' + d.getUTCFullYear();
  }
  function shortDay(day) { var d = new Date(parseDay(day)); return d.getUTCDate() + ' ' + MONTH[d.getUTCMonth()]; }
  function when(ts) {
    if (!ts) return '—';
    var d = new Date(ts);
    return isNaN(d.getTime()) ? ts : d.toLocaleString();
  }

  function ApiError(status, message) { this.status = status; this.message = message; }

  function api(path) {
    var token = getToken();
    return fetch(path, {
      headers: {'Authorization': 'Bearer ' + token, 'Accept': 'application/json'},
      cache: 'no-store', credentials: 'omit', redirect: 'error', referrerPolicy: 'no-referrer'
    }).then(function (res) {
      if (res.ok) return res.json();
      return res.json().catch(function () { return {}; }).then(function (body) {
        throw new ApiError(res.status, (body && (body.detail || body.title)) || ('HTTP ' + res.status));
      });
    });
  }

  // Every open request due before today + 45 days (and every overdue one): one listing per open status, paged.
  function listOpen(today) {
    var before = addDays(today, HORIZON_DAYS);
    var all = [];
    var truncated = false;
    function page(status, cursor, n) {
      var q = '/v1/requests?status=' + status + '&due_before=' + before + '&limit=' + PAGE_LIMIT;
      if (cursor) q += '&cursor=' + encodeURIComponent(cursor);
      return api(q).then(function (body) {
        Array.prototype.push.apply(all, body.items || []);
        if (body.next_cursor && n + 1 < MAX_PAGES) return page(status, body.next_cursor, n + 1);
        if (body.next_cursor) truncated = true;
        return null;
      });
    }
    return OPEN_STATUSES.reduce(function (p, status) {
      return p.then(function () { return page(status, null, 0); });
    }, Promise.resolve()).then(function () {
      all.sort(function (a, b) {
        return a.sla.respond_by < b.sla.respond_by ? -1 : a.sla.respond_by > b.sla.respond_by ? 1 : (a.id < b.id ? -1 : 1);
      });
      return {items: all, truncated: truncated};
    });
  }

  function stateCell(state) {
    var td = make('td');
    var span = make('span', {'class': 'state state-' + state});
    span.appendChild(make('span', {'class': 'mark', 'aria-hidden': 'true'}, state === 'breached' ? '✖' : state === 'at_risk' ? '▲' : state === 'on_track' ? '●' : '■'));
    span.appendChild(document.createTextNode(' ' + (STATE_LABEL[state] || state)));
    td.appendChild(span);
    return td;
  }

  function plural(n, one, many) { return n + ' ' + (n === 1 ? one : many); }

  function numCell(n) { return make('td', {'class': 'num'}, n); }

  function renderTiles(summary, items) {
    var s = summary.by_sla_state || {};
    var open = summary.open || 0;
    var today = summary.today;
    var week = 0;
    items.forEach(function (r) { var d = daysBetween(today, r.sla.respond_by); if (d >= 0 && d < 7) week += 1; });
    var next = (summary.next_due || []).filter(function (x) { return x.respond_by >= today; })[0];
    var tiles = [
      {key: 'open', label: 'Open requests', value: open, note: 'received, verifying or in progress'},
      {key: 'due7', label: 'Due in the next 7 days', value: week, note: 'respond-by date from today to ' + shortDay(addDays(today, 6))},
      {key: 'on_track', label: 'On track', value: s.on_track || 0, note: 'more than the at-risk margin left'},
      {key: 'at_risk', label: 'At risk', value: s.at_risk || 0, note: 'deadline close'},
      {key: 'breached', label: 'Breached', value: s.breached || 0, note: 'open past the deadline'},
      {key: 'next', label: 'Next deadline', value: next ? shortDay(next.respond_by) : 'none', note: next ? next.count + ' due on ' + longDay(next.respond_by) : 'no open request is due'}
    ];
    if (summary.next_acknowledge_by) {
      tiles.push({key: 'ack', label: 'Next acknowledgement due', value: shortDay(summary.next_acknowledge_by), note: longDay(summary.next_acknowledge_by)});
    }
    var ul = $('tiles');
    clear(ul);
    tiles.forEach(function (t) {
      var li = make('li', {'class': 'tile tile-' + t.key, 'data-tile': t.key});
      var label = make('span', {'class': 'tile-label'});
      if (t.key === 'at_risk' || t.key === 'breached' || t.key === 'on_track') {
        label.appendChild(make('span', {'class': 'mark', 'aria-hidden': 'true'}, t.key === 'breached' ? '✖' : t.key === 'at_risk' ? '▲' : '●'));
        label.appendChild(document.createTextNode(' '));
      }
      label.appendChild(document.createTextNode(t.label));
      li.appendChild(label);
      li.appendChild(make('span', {'class': 'tile-value', 'data-value': t.key}, t.value));
      li.appendChild(make('span', {'class': 'tile-note'}, t.note));
      ul.appendChild(li);
    });
    text($('as-of'), 'As of ' + when(summary.as_of) + ' (daemon date ' + longDay(today) + '). Closed requests: ' +
         (s.met || 0) + ' met their deadline, ' + (s.missed || 0) + ' missed it.');
  }

  function renderByType(summary) {
    var tbody = $('by-type').tBodies[0];
    clear(tbody);
    var byTypeSla = summary.open_by_type_sla || {};
    var openByType = summary.open_by_type || {};
    TYPES.forEach(function (t) {
      var c = byTypeSla[t] || {};
      var tr = make('tr');
      tr.appendChild(make('th', {scope: 'row'}, TYPE_LABEL[t] || t));
      tr.appendChild(numCell(c.on_track || 0));
      tr.appendChild(numCell(c.at_risk || 0));
      tr.appendChild(numCell(c.breached || 0));
      tr.appendChild(numCell(openByType[t] || 0));
      tbody.appendChild(tr);
    });
  }

  function renderBySystem(summary) {
    var tbody = $('by-system').tBodies[0];
    clear(tbody);
    var systems = summary.open_by_system || {};
    var names = Object.keys(systems).sort();
    names.forEach(function (name) {
      var c = systems[name];
      var tr = make('tr');
      tr.appendChild(make('th', {scope: 'row'}, name));
      tr.appendChild(numCell(c.on_track || 0));
      tr.appendChild(numCell(c.at_risk || 0));
      tr.appendChild(numCell(c.breached || 0));
      tr.appendChild(numCell(c.unfinished_tasks || 0));
      tbody.appendChild(tr);
    });
    $('by-system').hidden = names.length === 0;
    $('by-system-empty').hidden = names.length !== 0;
  }

  function renderChart(today, items) {
    var counts = [];
    var overdue = 0;
    for (var i = 0; i < HORIZON_DAYS; i++) counts.push(0);
    items.forEach(function (r) {
      var d = daysBetween(today, r.sla.respond_by);
      if (d < 0) overdue += 1; else if (d < HORIZON_DAYS) counts[d] += 1;
    });
    var max = Math.max(1, overdue, Math.max.apply(null, counts));
    var total = counts.reduce(function (a, b) { return a + b; }, 0);
    var chart = $('chart');
    // Keep <title> and <desc>, redraw the rest.
    Array.prototype.slice.call(chart.childNodes).forEach(function (n) {
      if (n.nodeName !== 'title' && n.nodeName !== 'desc') chart.removeChild(n);
    });
    var W = 920, H = 240, left = 36, right = 8, top = 18, bottom = 40;
    var columns = HORIZON_DAYS + 1;   // the overdue column, then one per day
    var step = (W - left - right) / columns;
    var barW = Math.max(4, step - 4);
    var plotH = H - top - bottom;
    var defs = svg('defs');
    var pattern = svg('pattern', {id: 'stripes', width: '6', height: '6', patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)'});
    pattern.appendChild(svg('rect', {width: '6', height: '6', 'class': 'stripe-bg'}));
    pattern.appendChild(svg('rect', {width: '3', height: '6', 'class': 'stripe-fg'}));
    defs.appendChild(pattern);
    chart.appendChild(defs);
    var g = svg('g', {'aria-hidden': 'true'});
    // Axis and gridlines at whole numbers.
    var ticks = max <= 5 ? max : 4;
    for (var t = 0; t <= ticks; t++) {
      var v = Math.round(max * t / ticks);
      var y = top + plotH - plotH * v / max;
      g.appendChild(svg('line', {x1: left, x2: W - right, y1: y, y2: y, 'class': 'grid'}));
      g.appendChild(svg('text', {x: left - 6, y: y + 4, 'class': 'axis', 'text-anchor': 'end'}, v));
    }
    function bar(col, n, cls, label) {
      var x = left + col * step + (step - barW) / 2;
      var h = plotH * n / max;
      if (n > 0) {
        g.appendChild(svg('rect', {x: x, y: top + plotH - h, width: barW, height: h, 'class': cls}));
        g.appendChild(svg('text', {x: x + barW / 2, y: top + plotH - h - 4, 'class': 'count', 'text-anchor': 'middle'}, n));
      }
      if (label) g.appendChild(svg('text', {x: x + barW / 2, y: H - bottom + 16, 'class': 'axis', 'text-anchor': 'middle'}, label));
    }
    bar(0, overdue, 'bar overdue', 'overdue');
    for (var d = 0; d < HORIZON_DAYS; d++) {
      bar(d + 1, counts[d], 'bar due', d > 0 && d % 7 === 0 ? shortDay(addDays(today, d)) : null);
    }
    g.appendChild(svg('line', {x1: left, x2: W - right, y1: top + plotH, y2: top + plotH, 'class': 'baseline'}));
    g.appendChild(svg('text', {x: left, y: H - 6, 'class': 'axis'}, 'Columns: overdue, then each day from today (' + shortDay(today) + ') to ' + shortDay(addDays(today, HORIZON_DAYS - 1))));
    chart.appendChild(g);

    var busiest = null;
    counts.forEach(function (n, i) { if (n > 0 && (!busiest || n > busiest.n)) busiest = {n: n, day: addDays(today, i)}; });
    var desc = plural(total, 'open request falls', 'open requests fall') + ' due in the next ' + HORIZON_DAYS + ' days' +
      (busiest ? '; the busiest day is ' + longDay(busiest.day) + ' with ' + busiest.n : '') +
      '. ' + plural(overdue, 'is', 'are') + ' overdue. The same figures are in the table below the chart.';
    text($('chart-desc'), desc);
    text($('chart-note'), desc);

    var tbody = $('due-table').tBodies[0];
    clear(tbody);
    var tr = make('tr');
    tr.appendChild(make('th', {scope: 'row'}, 'Overdue (before ' + longDay(today) + ')'));
    tr.appendChild(numCell(overdue));
    tbody.appendChild(tr);
    counts.forEach(function (n, i) {
      var row = make('tr');
      row.appendChild(make('th', {scope: 'row'}, longDay(addDays(today, i)) + (i === 0 ? ' (today)' : '')));
      row.appendChild(numCell(n));
      tbody.appendChild(row);
    });
  }

  function renderList() {
    var items = lastItems;
    var today = lastToday;
    var filter = $('list-filter').value;
    var shown = items.filter(function (r) { return filter === 'all' || r.sla.state === 'at_risk' || r.sla.state === 'breached'; });
    var tbody = $('requests').tBodies[0];
    clear(tbody);
    shown.slice(0, LIST_SHOWN).forEach(function (r) {
      var tr = make('tr', {'data-id': r.id, 'data-state': r.sla.state});
      var idCell = make('th', {scope: 'row'});
      idCell.appendChild(make('code', {title: r.id}, r.id.slice(0, 8)));
      tr.appendChild(idCell);
      tr.appendChild(make('td', null, TYPE_LABEL[r.type] || r.type));
      tr.appendChild(make('td', null, r.status.replace(/_/g, ' ')));
      tr.appendChild(make('td', null, longDay(r.sla.respond_by) + (r.sla.extended ? ' (extended)' : '')));
      tr.appendChild(numCell(r.sla.days_left == null ? daysBetween(today, r.sla.respond_by) : r.sla.days_left));
      tr.appendChild(stateCell(r.sla.state));
      var td = make('td');
      var btn = make('button', {type: 'button', 'class': 'link', 'data-open': r.id});
      btn.appendChild(document.createTextNode('Details'));
      btn.appendChild(make('span', {'class': 'sr-only'}, ' of request ' + r.id.slice(0, 8) + ', ' + (TYPE_LABEL[r.type] || r.type)));
      td.appendChild(btn);
      tr.appendChild(td);
      tbody.appendChild(tr);
    });
    $('requests').hidden = shown.length === 0;
    text($('requests-empty'), filter === 'all' ? 'No open request is due in the next 45 days.' : 'No open request is at risk or breached.');
    $('requests-empty').hidden = shown.length !== 0;
    $('requests-more').hidden = shown.length <= LIST_SHOWN;
    text($('requests-more'), 'Showing the first ' + LIST_SHOWN + ' of ' + shown.length + '.');
  }

  function announce(message, force) {
    // Only changes are announced: a refresh that finds the same figures stays silent.
    if (!force && message === lastAnnounced) return;
    lastAnnounced = message;
    text($('status'), message);
  }

  function showSignedIn(signedIn) {
    $('token-forget').hidden = !signedIn;
    $('refresh-controls').hidden = !signedIn;
    if (!signedIn) { $('board').hidden = true; }
  }

  function schedule() {
    if (timer) clearTimeout(timer);
    timer = null;
    if (!paused && getToken() && !document.hidden) timer = setTimeout(refresh, REFRESH_MS);
  }

  function refresh() {
    if (!getToken() || inFlight) return Promise.resolve();
    inFlight = true;
    $('board').setAttribute('aria-busy', 'true');
    var summary;
    return api('/v1/sla/summary').then(function (s) {
      summary = s;
      return listOpen(s.today);
    }).then(function (list) {
      lastItems = list.items;
      lastToday = summary.today;
      renderTiles(summary, list.items);
      renderByType(summary);
      renderBySystem(summary);
      renderChart(summary.today, list.items);
      renderList();
      $('board').hidden = false;
      text($('refreshed'), new Date().toLocaleTimeString());
      var s = summary.by_sla_state || {};
      announce('Dashboard updated: ' + (summary.open || 0) + ' open, ' + (s.at_risk || 0) + ' at risk, ' +
               (s.breached || 0) + ' breached.' + (list.truncated ? ' The list is incomplete (too many requests).' : ''));
    }).catch(function (e) {
      if (e instanceof ApiError && e.status === 401) {
        setToken('');
        showSignedIn(false);
        var err = $('token-error');
        text(err, 'The daemon did not accept this token (' + e.message + '). Enter another one.');
        err.hidden = false;
        $('token').setAttribute('aria-invalid', 'true');
        $('token').focus();
        announce('The token was not accepted.', true);
      } else {
        announce('Refresh failed: ' + (e && e.message ? e.message : 'network error') + '. The figures shown may be out of date; retrying in 30 seconds.');
      }
    }).then(function () {
      inFlight = false;
      $('board').removeAttribute('aria-busy');
      schedule();
    });
  }

  function openDetail(id, opener) {
    detailOpener = opener || null;
    // identity_values=omit: even an admin token gets no identity values back; they are never needed here.
    api('/v1/requests/' + encodeURIComponent(id) + '?identity_values=omit').then(function (r) {
      var section = $('detail');
      text($('detail-h'), 'Request ' + r.id.slice(0, 8) + ': ' + (TYPE_LABEL[r.type] || r.type));
      var facts = $('detail-facts');
      clear(facts);
      [['Request id', r.id], ['Type', TYPE_LABEL[r.type] || r.type], ['Status', r.status.replace(/_/g, ' ')],
       ['Channel', r.channel], ['Received', when(r.received_at)],
       ['Acknowledge by', r.sla.acknowledge_by ? longDay(r.sla.acknowledge_by) : '—'],
       ['Respond by', longDay(r.sla.respond_by) + (r.sla.extended ? ' (extended)' : '')],
       ['SLA state', (STATE_LABEL[r.sla.state] || r.sla.state) + (r.sla.days_left == null ? '' : ', ' + r.sla.days_left + ' days left')],
       ['Acknowledged', when(r.acknowledged_at)], ['Verified', when(r.verified_at)], ['Closed', when(r.closed_at)]
      ].forEach(function (f) { facts.appendChild(make('dt', null, f[0])); facts.appendChild(make('dd', null, f[1])); });

      var tasks = $('detail-tasks').tBodies[0];
      clear(tasks);
      (r.tasks || []).forEach(function (t) {
        var tr = make('tr');
        tr.appendChild(make('th', {scope: 'row'}, t.system));
        tr.appendChild(make('td', null, t.action));
        tr.appendChild(make('td', null, t.state.replace(/_/g, ' ')));
        tr.appendChild(numCell(t.attempts));
        tr.appendChild(make('td', null, when(t.next_attempt_at)));
        tr.appendChild(make('td', null, when(t.finished_at)));
        tr.appendChild(make('td', null, t.last_error || '—'));
        tasks.appendChild(tr);
      });
      if (!(r.tasks || []).length) {
        var none = make('tr');
        none.appendChild(make('td', {colspan: '7'}, 'No tasks yet: they are created when the request is verified (at once for opt-outs and limits).'));
        tasks.appendChild(none);
      }
      var history = $('detail-history').tBodies[0];
      clear(history);
      (r.history || []).forEach(function (h) {
        var tr = make('tr');
        tr.appendChild(make('td', null, when(h.at)));
        tr.appendChild(make('td', null, h.actor));
        tr.appendChild(make('td', null, h.action.replace(/_/g, ' ') + describe(h.detail)));
        history.appendChild(tr);
      });
      section.hidden = false;
      $('detail-h').focus();
    }).catch(function (e) {
      announce('Could not open the request: ' + (e && e.message ? e.message : 'network error') + '.', true);
    });
  }

  // A one-line summary of an audit event's detail: scalar fields only.
  function describe(detail) {
    if (!detail || typeof detail !== 'object') return '';
    var parts = [];
    Object.keys(detail).forEach(function (k) {
      var v = detail[k];
      if (v == null || typeof v === 'object') return;
      parts.push(k.replace(/_/g, ' ') + ': ' + v);
    });
    return parts.length ? ' (' + parts.slice(0, 8).join('; ') + ')' : '';
  }

  function closeDetail() {
    $('detail').hidden = true;
    if (detailOpener && document.body.contains(detailOpener)) detailOpener.focus();
    else $('list-h').focus();
  }

  function start() {
    $('token-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var input = $('token');
      var value = input.value.trim();
      var err = $('token-error');
      if (!value) {
        text(err, 'Enter a bearer token.');
        err.hidden = false;
        input.setAttribute('aria-invalid', 'true');
        input.focus();
        return;
      }
      err.hidden = true;
      input.removeAttribute('aria-invalid');
      input.value = '';
      setToken(value);
      showSignedIn(true);
      announce('Loading the dashboard…', true);
      refresh();
    });
    $('token-forget').addEventListener('click', function () {
      setToken('');
      if (timer) clearTimeout(timer);
      showSignedIn(false);
      $('detail').hidden = true;
      announce('Token forgotten.', true);
      $('token').focus();
    });
    $('refresh-now').addEventListener('click', function () { lastAnnounced = ''; refresh(); });
    $('refresh-pause').addEventListener('click', function () {
      paused = !paused;
      this.setAttribute('aria-pressed', paused ? 'true' : 'false');
      text(this, paused ? 'Resume auto-refresh' : 'Pause auto-refresh');
      announce(paused ? 'Auto-refresh paused.' : 'Auto-refresh resumed.', true);
      schedule();
    });
    $('list-filter').addEventListener('change', renderList);
    $('requests').addEventListener('click', function (ev) {
      var btn = ev.target.closest ? ev.target.closest('button[data-open]') : null;
      if (btn) openDetail(btn.getAttribute('data-open'), btn);
    });
    $('detail-close').addEventListener('click', closeDetail);
    $('detail').addEventListener('keydown', function (ev) { if (ev.key === 'Escape') closeDetail(); });
    document.addEventListener('visibilitychange', function () {
      if (document.hidden) { if (timer) clearTimeout(timer); timer = null; } else if (getToken()) refresh();
    });
    $('list-h').setAttribute('tabindex', '-1');
    if (getToken()) { showSignedIn(true); refresh(); } else { showSignedIn(false); }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
}());
