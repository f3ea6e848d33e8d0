/* mnas dashboard, part 1 of 2: formatting and the SVG views, as pure functions of the payload
 * (nas/dashboard/payload.py) that return markup. dashboard.js puts them on the page.
 *
 * Hand-written for mnas, no dependencies. SVG is written as markup (set as innerHTML), so this
 * file names no namespace or any other address. Exposed as window.mnasCharts.
 */
(function () {
  'use strict';

  // -- formatting ---------------------------------------------------------------------------
  function esc(value) {
    return String(value).replace(/[&<>"']/g, function (c) {
      return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c];
    });
  }

  function fmt(v) {
    if (v === null || v === undefined || (typeof v === 'number' && !isFinite(v))) { return '-'; }
    if (typeof v !== 'number') { return String(v); }
    if (Number.isInteger(v)) { return Math.abs(v) >= 10000 ? v.toLocaleString('en-US') : String(v); }
    var a = Math.abs(v);
    return a >= 1e-3 && a < 1e6 ? String(Number(v.toPrecision(4))) : v.toPrecision(3);
  }

  function num(v) { return typeof v === 'number' && isFinite(v); }

  function decisionText(t) {
    return Object.keys(t.decisions).map(function (k) { return k + '=' + t.decisions[k]; })
      .join(' ');
  }

  function scored(trials) {
    return trials.filter(function (t) {
      return t.status === 'complete' && num(t.accuracy) && num(t.latency_ms);
    });
  }

  function lookup(d) {
    var m = {};
    d.trials.forEach(function (t) { m[t.id] = t; });
    return function (id) { return m[id] || null; };
  }

  // -- scales and SVG markup ----------------------------------------------------------------
  function linear(d0, d1, r0, r1) {
    var span = d1 - d0 || 1;
    return function (v) { return r0 + (v - d0) / span * (r1 - r0); };
  }

  function niceTicks(lo, hi, count) {
    if (!(hi > lo)) { return [lo]; }
    var raw = (hi - lo) / count, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 5, 10].map(function (m) { return m * mag; })
      .filter(function (s) { return s >= raw; })[0];
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      out.push(Number(v.toPrecision(12)));
    }
    return out;
  }

  function extent(values, pad) {
    var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
    var d = (hi - lo) * pad || Math.abs(hi) * 0.05 || 1;
    return [lo - d, hi + d];
  }

  function scaleFor(values, r0, r1, log) {
    if (!log) {
      var d = extent(values, 0.06);
      return {scale: linear(d[0], d[1], r0, r1), ticks: niceTicks(d[0], d[1], 5)};
    }
    var e = extent(values.map(Math.log10), 0.06), f = linear(e[0], e[1], r0, r1), ticks = [];
    for (var p = Math.floor(e[0]); p <= Math.ceil(e[1]); p++) {
      [1, 2, 5].forEach(function (m) {
        var lg = Math.log10(m * Math.pow(10, p));
        if (lg >= e[0] && lg <= e[1]) { ticks.push(m * Math.pow(10, p)); }
      });
    }
    return {scale: function (v) { return f(Math.log10(v)); }, ticks: ticks};
  }

  function svg(w, h, body, cls) {
    return '<svg class="md-svg ' + (cls || '') + '" viewBox="0 0 ' + w + ' ' + h + '" width="' +
      w + '" height="' + h + '" role="img">' + body + '</svg>';
  }

  function text(x, y, s, cls, extra) {
    return '<text x="' + x.toFixed(1) + '" y="' + y.toFixed(1) + '" class="' + (cls || '') +
      '"' + (extra || '') + '>' + esc(s) + '</text>';
  }

  function line(x1, y1, x2, y2, cls) {
    return '<line x1="' + x1.toFixed(1) + '" y1="' + y1.toFixed(1) + '" x2="' + x2.toFixed(1) +
      '" y2="' + y2.toFixed(1) + '" class="' + cls + '"/>';
  }

  function circle(cls, id, x, y, r) {
    return '<circle class="' + cls + '"' + (id === null ? '' : ' data-id="' + id + '"') +
      ' cx="' + x.toFixed(1) + '" cy="' + y.toFixed(1) + '" r="' + r + '"/>';
  }

  function empty(message) { return '<p class="md-empty">' + esc(message) + '</p>'; }

  function axes(box, xs, ys, labels) {
    var out = '', midY = ((box.t + box.b) / 2).toFixed(1);
    xs.ticks.forEach(function (v) {
      var x = xs.scale(v);
      out += line(x, box.t, x, box.b, 'md-grid') + text(x, box.b + 14, fmt(v), 'md-tick mid');
    });
    ys.ticks.forEach(function (v) {
      var y = ys.scale(v);
      out += line(box.l, y, box.r, y, 'md-grid') + text(box.l - 5, y + 3, fmt(v), 'md-tick end');
    });
    out += line(box.l, box.b, box.r, box.b, 'md-axis') + line(box.l, box.t, box.l, box.b, 'md-axis');
    out += text((box.l + box.r) / 2, box.b + 30, labels[0], 'md-label mid');
    return out + text(12, +midY, labels[1], 'md-label mid', ' transform="rotate(-90 12 ' + midY + ')"');
  }

  var W = 560, BOX = {l: 56, r: W - 14, t: 12, b: 330 - 42};

  // -- accuracy vs latency, with the Pareto front -------------------------------------------
  function front(d, selected) {
    var pts = scored(d.trials);
    if (!pts.length) { return empty('no complete trial with accuracy and latency yet'); }
    var lat = pts.map(function (t) { return t.latency_ms; });
    var lo = Math.min.apply(null, lat), log = lo > 0 && Math.max.apply(null, lat) / lo > 30;
    var xs = scaleFor(lat, BOX.l, BOX.r, log);
    var ys = scaleFor(pts.map(function (t) { return t.accuracy; }), BOX.b, BOX.t, false);
    var out = axes(BOX, xs, ys, ['latency (ms)' + (log ? ', log scale' : ''), 'accuracy']);
    var tgt = d.run.latency_target, onFront = new Set(d.front);
    if (num(tgt) && xs.scale(tgt) >= BOX.l && xs.scale(tgt) <= BOX.r) {
      out += line(xs.scale(tgt), BOX.t, xs.scale(tgt), BOX.b, 'md-target') +
        text(xs.scale(tgt) + 3, BOX.t + 10, 'T = ' + fmt(tgt) + ' ms', 'md-tick');
    }
    out += frontPath(pts.filter(function (t) { return onFront.has(t.id); }), xs, ys);
    pts.forEach(function (t) {
      var cls = 'pt' + (onFront.has(t.id) ? ' front' : '') + (t.id === selected ? ' sel' : '');
      out += circle(cls, t.id, xs.scale(t.latency_ms), ys.scale(t.accuracy), onFront.has(t.id) ? 5 : 4);
    });
    return svg(W, 330, out, 'md-fit');
  }

  function frontPath(pts, xs, ys) {
    if (!pts.length) { return ''; }
    pts = pts.slice().sort(function (a, b) { return a.latency_ms - b.latency_ms; });
    var p = 'M' + xs.scale(pts[0].latency_ms).toFixed(1) + ' ' + ys.scale(pts[0].accuracy).toFixed(1);
    pts.slice(1).forEach(function (t) {
      p += 'H' + xs.scale(t.latency_ms).toFixed(1) + 'V' + ys.scale(t.accuracy).toFixed(1);
    });
    return '<path class="md-front-line" d="' + p + '"/>';
  }

  // -- learning curves ----------------------------------------------------------------------
  function curvePath(t, xs, ys) {
    return t.history.filter(function (h) { return num(h.val_accuracy) && num(h.epoch); })
      .map(function (h, i) {
        return (i ? 'L' : 'M') + xs(h.epoch).toFixed(1) + ' ' + ys(h.val_accuracy).toFixed(1);
      }).join('');
  }

  function curves(d, selected) {
    if (!d.has_history) { return empty('this page has no per-epoch histories'); }
    var withHist = d.trials.filter(function (t) { return t.history.length; }), maxE = 1, maxA = 1;
    if (!withHist.length) { return empty('no trial has reported an epoch yet'); }
    withHist.forEach(function (t) {
      t.history.forEach(function (h) {
        maxE = Math.max(maxE, h.epoch || 1);
        maxA = num(h.val_accuracy) ? Math.max(maxA, h.val_accuracy) : maxA;
      });
    });
    var xs = {scale: linear(1, Math.max(maxE, 2), BOX.l, BOX.r), ticks: niceTicks(1, maxE, 6)};
    var ys = {scale: linear(0, maxA, BOX.b, BOX.t), ticks: niceTicks(0, maxA, 5)};
    var out = axes(BOX, xs, ys, ['epoch', 'validation accuracy']), sel = null;
    withHist.forEach(function (t) {
      if (t.id === selected) { sel = t; return; }
      out += '<path class="bg-curve" data-id="' + t.id + '" d="' + curvePath(t, xs.scale, ys.scale) + '"/>';
    });
    if (sel) {
      out += '<path class="curve sel" data-id="' + sel.id + '" d="' + curvePath(sel, xs.scale, ys.scale) + '"/>';
      sel.history.filter(function (h) { return num(h.val_accuracy); }).forEach(function (h) {
        out += circle('mark', null, xs.scale(h.epoch), ys.scale(h.val_accuracy), 3);
      });
    }
    return svg(W, 330, out, 'md-fit') + (sel ? '' : empty('the selected trial reported no epoch'));
  }

  // -- parallel coordinates -----------------------------------------------------------------
  function parallelAxes(d, pts) {
    var out = d.decisions.map(function (label) {
      var vals = [];
      pts.forEach(function (t) {
        var v = t.decisions[label];
        if (v !== undefined && vals.indexOf(v) < 0) { vals.push(v); }
      });
      var allNum = vals.every(function (v) { return typeof v === 'number'; });
      vals.sort(allNum ? function (a, b) { return a - b; } :
        function (a, b) { return String(a).localeCompare(String(b)); });
      return {label: label, values: vals, get: function (t) { return t.decisions[label]; }};
    });
    ['accuracy', 'latency_ms', 'reward'].forEach(function (key) {
      var vs = pts.map(function (t) { return t[key]; }).filter(num);
      if (vs.length) {
        out.push({label: key, min: Math.min.apply(null, vs), max: Math.max.apply(null, vs),
                  get: function (t) { return t[key]; }});
      }
    });
    return out;
  }

  function axisPos(ax, v, top, bottom) {
    var f;
    if (ax.values) {
      var i = ax.values.indexOf(v);
      f = i < 0 ? null : (ax.values.length < 2 ? 0.5 : i / (ax.values.length - 1));
    } else {
      f = !num(v) ? null : (ax.max > ax.min ? (v - ax.min) / (ax.max - ax.min) : 0.5);
    }
    return f === null ? null : bottom - f * (bottom - top);
  }

  function rewardColor(pts) {
    var rs = pts.map(function (t) { return t.reward; }).filter(num);
    var lo = Math.min.apply(null, rs), hi = Math.max.apply(null, rs);
    return function (t) {
      var f = num(t.reward) && hi > lo ? (t.reward - lo) / (hi - lo) : 0.5;
      return 'hsl(' + Math.round(25 + f * 190) + ',70%,' + Math.round(55 - f * 15) + '%)';
    };
  }

  function parallel(d, selected) {
    var pts = scored(d.trials);
    if (!pts.length) { return empty('no complete trial yet'); }
    var ax = parallelAxes(d, pts), gap = 78, top = 70, bottom = 300, left = 40, out = '';
    var color = rewardColor(pts);
    ax.forEach(function (a, i) {
      var x = left + i * gap;
      out += line(x, top, x, bottom, 'md-axis') + text(x, top - 12, a.label, 'md-plabel',
        ' transform="rotate(-25 ' + x + ' ' + (top - 12) + ')"');
      (a.values || [a.min, a.max]).forEach(function (v) {
        out += text(x + 4, axisPos(a, v, top, bottom) + 3, fmt(v), 'md-tick');
      });
    });
    pts.sort(function (a, b) { return (a.id === selected) - (b.id === selected); });  // on top
    pts.forEach(function (t) {
      var p = '';
      ax.forEach(function (a, i) {
        var y = axisPos(a, a.get(t), top, bottom);
        if (y !== null) { p += (p ? 'L' : 'M') + (left + i * gap) + ' ' + y.toFixed(1); }
      });
      out += '<path class="pline' + (t.id === selected ? ' sel' : '') + '" data-id="' + t.id +
        '" stroke="' + color(t) + '" d="' + p + '"/>';
    });
    return svg(left * 2 + gap * (ax.length - 1), bottom + 24, out, '');
  }

  // -- best reward so far, decision importance ----------------------------------------------
  function progress(d) {
    var rows = d.progress, byId = lookup(d), H = 260, box = {l: BOX.l, r: BOX.r, t: 12, b: H - 42};
    var dots = rows.map(function (r) { return {n: r.n, t: byId(r.trial_id)}; })
      .filter(function (q) { return q.t && num(q.t.reward); });
    if (!dots.length) { return empty('no complete trial yet'); }
    var xs = {scale: linear(1, Math.max(rows.length, 2), box.l, box.r), ticks: niceTicks(1, rows.length, 6)};
    var ys = scaleFor(dots.map(function (q) { return q.t.reward; }), box.b, box.t, false), p = '';
    var out = axes(box, xs, ys, ['finished trials', 'reward']);
    rows.filter(function (r) { return num(r.best_reward); }).forEach(function (r) {
      var x = xs.scale(r.n).toFixed(1), y = ys.scale(r.best_reward).toFixed(1);
      p += p ? 'H' + x + 'V' + y : 'M' + x + ' ' + y;
    });
    dots.forEach(function (q) {
      out += circle('dot', q.t.id, xs.scale(q.n), ys.scale(q.t.reward), 3);
    });
    return svg(W, H, out + '<path class="md-best" d="' + p + '"/>', 'md-fit');
  }

  function importance(d) {
    var rows = d.importance.filter(function (r) { return num(r.spread); });
    if (!rows.length) { return empty('needs complete trials'); }
    var rowH = 18, left = 130, H = rows.length * rowH + 24, out = '';
    var max = Math.max.apply(null, rows.map(function (r) { return r.spread; })) || 1;
    rows.forEach(function (r, i) {
      var y = 6 + i * rowH, w = (W - left - 110) * r.spread / max;
      out += '<g class="imp" data-dec="' + esc(r.decision) + '">' +
        text(left - 6, y + 12, r.decision, 'md-tick end') + '<rect x="' + left + '" y="' + y +
        '" width="' + Math.max(w, 1).toFixed(1) + '" height="' + (rowH - 5) + '" class="bar"/>' +
        text(left + w + 5, y + 12, fmt(r.spread) + ' (best ' + fmt(r.best_value) + ')', 'md-tick') +
        '</g>';
    });
    return svg(W, H, out, 'md-fit');
  }

  // -- tooltips -----------------------------------------------------------------------------
  function pairs(items) {
    return '<div class="md-dec">' + items.map(function (kv) {
      return '<span>' + esc(kv[0]) + '</span><span>' + esc(kv[1]) + '</span>';
    }).join('') + '</div>';
  }

  function trialTip(t) {
    return '<b>trial ' + t.id + '</b> ' + esc(t.status) + (t.rank ? ', rank ' + t.rank : '') +
      '<br>reward ' + esc(fmt(t.reward)) + ' · accuracy ' + esc(fmt(t.accuracy)) + ' · latency ' +
      esc(fmt(t.latency_ms)) + ' ms (spread ' + esc(fmt(t.latency_spread)) + ')<br>params ' +
      esc(fmt(t.params)) + ' · MACs ' + esc(fmt(t.macs)) + ' · ' + t.history.length + ' epochs' +
      (t.error ? '<br><i>' + esc(t.error) + '</i>' : '') +
      pairs(Object.keys(t.decisions).map(function (k) { return [k, fmt(t.decisions[k])]; }));
  }

  function decisionTip(d, name) {
    var r = d.importance.filter(function (x) { return x.decision === name; })[0];
    return r ? '<b>' + esc(name) + '</b>: mean reward by value' + pairs(r.values.map(function (v) {
      return [fmt(v.value), fmt(v.mean_reward) + ' (n = ' + v.n + ')'];
    })) : '';
  }

  window.mnasCharts = {esc: esc, fmt: fmt, num: num, decisionText: decisionText, lookup: lookup,
                       front: front, curves: curves, parallel: parallel, progress: progress,
                       importance: importance, trialTip: trialTip, decisionTip: decisionTip};
})();
