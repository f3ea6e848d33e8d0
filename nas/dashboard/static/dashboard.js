/* mnas dashboard, part 2 of 2: the page's state, header, trial table, events and data source.
 * The views come from charts.js (window.mnasCharts), loaded first.
 *
 * Hand-written for mnas, no dependencies. Served by `nas dashboard`, it polls the same-origin
 * /api/run and redraws when the run's files changed; inlined into report.html, it reads the
 * #mnas-data blob and never touches the network.
 *
 * State in the address's hash (shareable, and what the browser test sets):
 *   #sort=accuracy:asc&status=complete&q=width=8&trial=3
 */
(function () {
  'use strict';

  var POLL_MS = 3000;
  var C = window.mnasCharts, root = document.getElementById('mnas-dash');
  if (!root || !C) { return; }
  var esc = C.esc, fmt = C.fmt;
  var state = {data: null, stamp: null, byId: null, sort: 'reward', dir: -1, q: '', status: '',
               selected: null, live: root.getAttribute('data-live') === '1'};

  var COLUMNS = [
    {key: 'id', label: 'trial', num: true},
    {key: 'status', label: 'status'},
    {key: 'origin', label: 'origin', get: function (t) { return t.origin || ''; }},
    {key: 'rank', label: 'rank', num: true},
    {key: 'reward', label: 'reward', num: true},
    {key: 'accuracy', label: 'accuracy', num: true},
    {key: 'latency_ms', label: 'latency (ms)', num: true},
    {key: 'params', label: 'params', num: true},
    {key: 'macs', label: 'MACs', num: true},
    {key: 'epochs', label: 'epochs', num: true, get: function (t) {
      return t.history.length || null; }},
    {key: 'decisions', label: 'decisions', get: C.decisionText},
    {key: 'error', label: 'error'}
  ];

  function el(id) { return document.getElementById(id); }

  function byId(id) { return state.byId ? state.byId(id) : null; }

  // -- header -------------------------------------------------------------------------------
  function renderHeader(d) {
    var r = d.run, target = r.target || r.done;
    el('md-name').textContent = r.name;
    var badge = el('md-state');
    badge.textContent = r.state;
    badge.className = 'md-badge st-' + r.state;
    el('md-mode').textContent = state.live ? 'live: checks for new trials every ' +
      POLL_MS / 1000 + ' s' : 'snapshot of ' + new Date(d.generated_at * 1000).toLocaleString();
    el('md-bar-fill').style.width = Math.min(100, 100 * r.done / (target || 1)) + '%';
    var best = r.best ? 'best: trial ' + r.best.trial_id + ', reward ' + fmt(r.best.reward) +
      ' (accuracy ' + fmt(r.best.accuracy) + ', ' + fmt(r.best.latency_ms) + ' ms)' : 'no best yet';
    el('md-counts').innerHTML = '<b>' + r.done + ' / ' + fmt(r.target) + ' trials</b>: ' +
      r.complete + ' complete, ' + r.failed + ' failed, ' + r.pruned + ' pruned. ' + esc(best) +
      '<br>' + esc((r.space || '?') + ' space, ' + (r.controller || '?') +
      ' controller; reward ' + r.reward) +
      (r.last_finished_at ? esc('; last trial finished ' +
        new Date(r.last_finished_at * 1000).toLocaleTimeString()) : '') +
      (r.warm_start && r.warm_start.length ? '<br><span class="md-warm">' + esc('warm start: ' +
        r.warm_start.map(function (s) { return s.name + ' (' + s.records + ' records)'; })
          .join(', ') + '; ' + r.warm_children + ' children from their knowledge') +
        '</span>' : '');
  }

  function showError(message) {
    var box = el('md-error');
    box.hidden = !message;
    box.textContent = message || '';
  }

  // -- the table ----------------------------------------------------------------------------
  function cell(t, c) { return c.get ? c.get(t) : t[c.key]; }

  function compare(a, b) {
    var c = COLUMNS.filter(function (col) { return col.key === state.sort; })[0] || COLUMNS[0];
    var x = cell(a, c), y = cell(b, c), nx = x === null || x === undefined || x === '';
    var ny = y === null || y === undefined || y === '';
    if (nx || ny) { return nx && ny ? a.id - b.id : (nx ? 1 : -1); }
    var r = c.num ? x - y : String(x).localeCompare(String(y));
    return r * state.dir || a.id - b.id;
  }

  function matches(t) {
    if (state.status && t.status !== state.status) { return false; }
    var hay = ['#' + t.id, t.status, t.key || '', C.decisionText(t), t.error || ''].join(' ')
      .toLowerCase();
    return state.q.toLowerCase().split(/\s+/).filter(Boolean).every(function (w) {
      return hay.indexOf(w) >= 0;
    });
  }

  function renderTable(d) {
    var rows = d.trials.filter(matches).sort(compare);
    var head = COLUMNS.map(function (c) {
      var on = c.key === state.sort, arrow = on ? (state.dir > 0 ? ' \u25b2' : ' \u25bc') : '';
      return '<th data-sort="' + c.key + '" class="' + (c.num ? 'num' : '') +
        (on ? ' sorted' : '') + '" title="sort by ' + esc(c.label) + '">' + esc(c.label) +
        arrow + '</th>';
    }).join('');
    var body = rows.map(function (t) {
      return '<tr data-id="' + t.id + '" class="st-' + esc(t.status) +
        (t.id === state.selected ? ' sel' : '') + '">' + COLUMNS.map(function (c) {
          var v = esc(fmt(cell(t, c)));
          return '<td class="' + (c.num ? 'num' : 'c-' + c.key) + '"' +
            (c.num ? '' : ' title="' + v + '"') + '>' + v + '</td>';
        }).join('') + '</tr>';
    }).join('');
    el('md-table').innerHTML = '<table><thead><tr>' + head + '</tr></thead><tbody>' + body +
      '</tbody></table>';
    el('md-shown').textContent = rows.length + ' of ' + d.trials.length + ' trials shown';
  }

  // -- the views (charts.js) ----------------------------------------------------------------
  function renderCurve(d) {
    var sel = byId(state.selected);
    el('md-curve-title').textContent = sel ? 'trial ' + sel.id + ' (' + sel.status +
      ', accuracy ' + fmt(sel.accuracy) + ', ' + sel.history.length +
      ' epochs); the others in grey' : '';
    el('md-curve').innerHTML = C.curves(d, state.selected);
  }

  function view(id, draw) {
    return function (d) { el(id).innerHTML = draw(d, state.selected); };
  }

  var VIEWS = {header: renderHeader, table: renderTable, front: view('md-front', C.front),
               curve: renderCurve, parallel: view('md-parallel', C.parallel),
               progress: view('md-progress', C.progress),
               importance: view('md-importance', C.importance)};

  // -- tooltip, selection, events -----------------------------------------------------------
  function onOver(ev) {
    var tip = el('md-tip'), target = ev.target.closest('[data-id],[data-dec]');
    if (!target || target.tagName === 'TR') { tip.hidden = true; return; }
    var id = target.getAttribute('data-id'), t = id === null ? null : byId(Number(id));
    tip.innerHTML = t ? C.trialTip(t) : C.decisionTip(state.data, target.getAttribute('data-dec'));
    tip.hidden = !tip.innerHTML;
    var x = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
    var y = ev.clientY + 14 + tip.offsetHeight > window.innerHeight ?
      ev.clientY - tip.offsetHeight - 10 : ev.clientY + 14;
    tip.style.left = Math.max(4, x) + 'px';
    tip.style.top = Math.max(4, y) + 'px';
  }

  function onClick(ev) {
    var th = ev.target.closest('th[data-sort]');
    if (th) {
      var key = th.getAttribute('data-sort');
      state.dir = state.sort === key ? -state.dir : (key === 'id' || key === 'latency_ms' ? 1 : -1);
      state.sort = key;
      return update(['table']);
    }
    var target = ev.target.closest('[data-id]');
    if (target) {
      state.selected = Number(target.getAttribute('data-id'));
      update(['table', 'front', 'curve', 'parallel']);
    }
  }

  function defaultSelection(d) {
    if (state.selected !== null && byId(state.selected)) { return state.selected; }
    if (d.run.best && byId(d.run.best.trial_id)) { return d.run.best.trial_id; }
    return d.trials.length ? d.trials[d.trials.length - 1].id : null;
  }

  function update(which) {
    if (!state.data) { return; }
    (which || Object.keys(VIEWS)).forEach(function (v) { VIEWS[v](state.data); });
    writeHash();
  }

  function render(d) {
    state.data = d;
    state.stamp = d.stamp;
    state.byId = C.lookup(d);
    state.selected = defaultSelection(d);
    update();
  }

  // -- the address's hash -------------------------------------------------------------------
  function readHash() {
    location.hash.replace(/^#/, '').split('&').forEach(function (part) {
      var kv = part.split('='), k = kv.shift(), v = decodeURIComponent(kv.join('='));
      if (k === 'sort') { state.sort = v.split(':')[0]; state.dir = /:asc$/.test(v) ? 1 : -1; }
      if (k === 'status') { state.status = v; }
      if (k === 'q') { state.q = v; }
      if (k === 'trial' && v !== '') { state.selected = Number(v); }
    });
    el('md-filter').value = state.q;
    el('md-status').value = state.status;
  }

  function writeHash() {
    var h = 'sort=' + state.sort + ':' + (state.dir > 0 ? 'asc' : 'desc') +
      (state.status ? '&status=' + encodeURIComponent(state.status) : '') +
      (state.q ? '&q=' + encodeURIComponent(state.q) : '') +
      (state.selected !== null ? '&trial=' + state.selected : '');
    if (location.hash !== '#' + h && window.history && history.replaceState) {
      try { history.replaceState(null, '', '#' + h); } catch (e) { /* a file: page may refuse */ }
    }
  }

  // -- start --------------------------------------------------------------------------------
  function poll() {
    fetch('/api/run', {cache: 'no-store'}).then(function (resp) {
      return resp.json().then(function (body) { return {ok: resp.ok, body: body}; });
    }).then(function (r) {
      if (!r.ok) { return showError('cannot read the run: ' + r.body.error); }
      showError('');
      if (r.body.stamp !== state.stamp) { render(r.body); }
    }).catch(function () {
      showError('cannot reach the dashboard server (stopped?); retrying');
    }).then(function () { setTimeout(poll, POLL_MS); });
  }

  function skeleton() {
    root.innerHTML = '<header class="md-head"><div class="md-title"><span id="md-name"></span> ' +
      '<span id="md-state" class="md-badge"></span> <span id="md-mode" class="md-mode"></span>' +
      '</div><div class="md-bar"><div id="md-bar-fill"></div></div><div id="md-counts"></div>' +
      '<div id="md-error" class="md-error" hidden></div></header>' +
      card('md-front', 'Accuracy vs latency', 'Pareto front ringed; hover a point, click to select', 'half') +
      card('md-curve', 'Learning curve', '', 'half') +
      card('md-parallel', 'Parallel coordinates', 'decisions, accuracy, latency and reward of ' +
        'each complete trial; colour: reward (orange low, blue high)', 'wide') +
      card('md-progress', 'Best reward so far', 'dots: each complete trial', 'half') +
      card('md-importance', 'Decision importance', 'spread of mean reward over each ' +
        "decision's values; hover for the values", 'half') +
      '<section class="md-card wide"><h3>Trials <span class="md-hint">click a header to sort, ' +
      'a row to select</span></h3><div class="md-tools"><input id="md-filter" type="search" ' +
      'placeholder="filter: words that must all appear (7, width=16, failed, ...)" ' +
      'aria-label="filter trials"> <select id="md-status" aria-label="status"><option value="">' +
      'every status</option><option>complete</option><option>failed</option><option>pruned' +
      '</option></select> <span id="md-shown"></span></div><div id="md-table" class="md-table">' +
      '</div></section><div id="md-tip" class="md-tip" hidden></div>';
  }

  function card(id, title, hint, size) {
    return '<section class="md-card ' + size + '"><h3>' + esc(title) + ' <span class="md-hint"' +
      (id === 'md-curve' ? ' id="md-curve-title"' : '') + '>' + esc(hint) + '</span></h3>' +
      '<div id="' + id + '" class="md-plot"></div></section>';
  }

  function start() {
    skeleton();
    readHash();
    root.addEventListener('mouseover', onOver);
    root.addEventListener('mouseleave', function () { el('md-tip').hidden = true; });
    root.addEventListener('click', onClick);
    el('md-filter').addEventListener('input', function (ev) { state.q = ev.target.value; update(['table']); });
    el('md-status').addEventListener('change', function (ev) {
      state.status = ev.target.value; update(['table']);
    });
    var blob = document.getElementById('mnas-data');
    if (state.live) { return poll(); }
    try { render(JSON.parse(blob.textContent)); } catch (e) {
      showError('the embedded run data cannot be read: ' + e.message);
    }
  }

  start();
})();
