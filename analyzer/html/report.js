// report.js - draws the HTML report from the embedded JSON report: diagnosis,
// per-thread timelines (zoomable), a clickable flame graph and tables.
"use strict";

(function () {
  const report = JSON.parse(document.getElementById("stalltrace-data").textContent);
  // Folded stacks and pool workers' busy spans, by pid (report_html_views.c).
  const viewsEl = document.getElementById("stalltrace-views");
  const views = viewsEl ? JSON.parse(viewsEl.textContent) : {};
  const app = document.getElementById("app");

  // ---- small helpers ------------------------------------------------------

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children || []) if (c != null) e.append(c);
    return e;
  }

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }

  function fmtMs(ms) {
    if (ms >= 1000) return (ms / 1000).toFixed(ms >= 10000 ? 0 : 1) + " s";
    if (ms >= 10) return ms.toFixed(0) + " ms";
    if (ms >= 1) return ms.toFixed(1) + " ms";
    return ms.toFixed(2) + " ms";
  }

  function base(path) {
    return String(path || "").split("/").pop();
  }

  // Frames of libc, the loader and the interpreters' call machinery: not the
  // place a person wants named (the text report folds the same ones).
  const PLUMBING_MODULES = ["libc.so", "libc-", "ld-linux", "libpthread", "libstalltrace", "[vdso]"];
  const PLUMBING_FUNCS = ["_PyEval_", "PyEval_", "_PyObject_", "PyObject_", "_PyFunction_", "cfunction_",
    "method_vectorcall", "PyVectorcall", "_PyVectorcall", "slot_tp_", "context_run", "task_step",
    "_PyRun_", "PyRun_", "pymain_", "Py_RunMain", "Py_BytesMain", "Builtins_", "v8::", "node::",
    "uv_run", "uv__"];
  function isPlumbing(f) {
    const m = String(f.module || ""), fn = String(f.function || "");
    return PLUMBING_MODULES.some((p) => m.startsWith(p)) || PLUMBING_FUNCS.some((p) => fn.startsWith(p));
  }

  function frameLabel(f) {
    return f.function || (f.module ? "[" + base(f.module) + "]" : "[unknown]");
  }

  function frameText(f) {
    let s = frameLabel(f);
    if (f.file) s += " (" + base(f.file) + (f.line ? ":" + f.line : "") + ")";
    else if (f.module && f.function) s += " (" + base(f.module) + ")";
    return s;
  }

  function topFrame(stack) {
    if (!stack || !stack.length) return "(no stack)";
    const f = stack.find((x) => x.function && !isPlumbing(x)) || stack[0];
    return frameText(f);
  }

  function stackList(stack) {
    const ol = el("ol", {class: "stack mono"});
    for (const f of stack || []) ol.append(el("li", {class: isPlumbing(f) ? "plumbing" : "", text: frameText(f)}));
    return ol;
  }

  function threadName(proc, tid) {
    const t = (proc.threads || []).find((x) => x.tid === tid);
    return t ? t.name : "?";
  }

  // What a thread is to the reader: "loop", "anyio worker 7/40", "libuv pool
  // 2/4", and the name the program gave it when that is not just the
  // process's own (every thread of python3 is "python3" unless renamed).
  function threadLabel(proc, tid) {
    const threads = proc.threads || [], t = threads.find((x) => x.tid === tid);
    if (!t) return "thread " + tid;
    const main = threads.find((x) => x.tid === proc.pid);
    const own = t.name && (!main || t.name !== main.name || t.tid === proc.pid) ? t.name : "";
    let role = "thread";
    if (t.role === "loop") role = "loop";
    else if (t.role === "worker") {
      const pool = (proc.pools || []).find((p) => p.id === t.pool);
      if (pool) {
        // A pool that replaced threads saw more than it keeps at once.
        const i = (pool.tids || []).indexOf(tid) + 1, of = Math.max(pool.max_threads || 0, pool.threads);
        role = (pool.kind === "libuv" ? "libuv pool " : pool.kind + " worker ") + (i || "?") + "/" + of;
      }
    }
    return role + (own && own !== role ? " · " + own : "") + " " + tid;
  }

  // Nothing past the threshold: no diagnosis, no stall, no saturated pool,
  // no lock that matters (the text report's "Nothing to fix").
  function healthy(proc) {
    return !(proc.diagnosis || []).length && !(proc.stalls || []).length &&
      !(proc.pools || []).some((p) => (p.saturations || []).length) && !(proc.locks || []).some((l) => l.culprit);
  }

  function poolTitle(p) {
    return p.kind + " pool " + p.id + (p.max_threads ? " (up to " + p.max_threads + " threads)" : "");
  }

  // The figures that show a healthy recording is healthy: a line per loop and pool.
  function healthFigures(proc) {
    const lines = [];
    for (const t of proc.threads || [])
      if (t.role === "loop")
        lines.push("loop thread " + t.tid + " (" + t.name + "): " + t.loop.iterations + " iterations, busy "
          + (100 * t.loop.utilization).toFixed(1) + "%, p50 " + fmtMs(t.loop.p50_ms) + ", p99 " + fmtMs(t.loop.p99_ms)
          + ", max " + fmtMs(t.loop.max_ms));
    for (const p of proc.pools || [])
      lines.push(poolTitle(p) + ": " + p.threads + " workers, busy " + (100 * (p.busy_ratio || 0)).toFixed(0)
        + "%, never saturated" + (p.queue_wait_ms ? ", queue wait p99 " + fmtMs(p.queue_wait_ms.p99 || 0)
        : ", queue wait: unknown"));
    return lines;
  }

  // ---- diagnosis ------------------------------------------------------------

  function diagnosisBox(procs) {
    const items = [];
    for (const p of procs)
      for (const d of p.diagnosis || [])
        items.push(el("p", {}, [el("span", {class: "culprit", text: d.culprit.replace(/_/g, " ")}),
          document.createTextNode(d.summary + (procs.length > 1 ? " (pid " + p.pid + ")" : ""))]));
    if (!items.length && procs.every(healthy)) {
      for (const p of procs) {
        items.push(el("p", {class: "nothing"}, [el("strong", {text: "Nothing to fix"}), document.createTextNode(
          ": no event-loop stall of " + fmtMs(p.threshold_ms || 0) + " or more, no pool saturated, no lock contended."
          + (procs.length > 1 ? " (pid " + p.pid + ")" : ""))]));
        items.push(el("ul", {class: "figures mono"}, healthFigures(p).map((t) => el("li", {text: t}))));
      }
    } else if (!items.length)
      items.push(el("p", {text: "No event-loop stall, pool saturation or lock contention past the threshold "
        + "was recorded."}));
    return el("section", {class: "diagnosis" + (items.length && procs.some((p) => (p.diagnosis || []).length)
      ? "" : " ok"), id: "diagnosis"}, [el("h2", {text: procs.every(healthy) ? "Health" : "What to look at first"}), ...items]);
  }

  // ---- timeline -------------------------------------------------------------

  // Rows: loop threads first, then one lane per pool (its threads below it,
  // shown when the lane is clicked), then other threads with events.
  function timelineRows(proc) {
    const rows = new Map(), pv = (views[proc.pid] || {}).pools || {};
    const threadOf = (tid) => (proc.threads || []).find((x) => x.tid === tid);
    const spanned = (tid) => { const t = threadOf(tid); return t && t.role === "worker" && pv[t.pool]; };
    const row = (key, label, extra) => {
      if (!rows.has(key)) rows.set(key, Object.assign({key, label, events: []}, extra || {}));
      return rows.get(key);
    };
    const threadRow = (tid) => {
      const t = threadOf(tid);
      return row("t" + tid, threadLabel(proc, tid), t && t.role === "worker" ? {inPool: t.pool, hidden: true} : {});
    };
    for (const t of proc.threads || [])
      if (t.role === "loop")
        row("t" + t.tid, threadLabel(proc, t.tid) + " (" + (100 * t.loop.utilization).toFixed(1) + "% busy)",
          {loop: true});
    for (const p of proc.pools || []) {
      const cap = p.max_threads || p.threads || 1;
      const lane = row("p" + p.id, poolTitle(p), {pool: p, cap, spans: (pv[p.id] || {}).spans || [],
        partial: (pv[p.id] || {}).partial, expanded: false});
      for (const s of p.saturations || [])
        lane.events.push({kind: "saturation", start: s.start_s * 1000, dur: s.duration_ms,
          title: poolTitle(p) + " saturated for " + fmtMs(s.duration_ms) + ": all " + cap + " busy, work waited"});
      for (const tid of p.tids || []) threadRow(tid);
      for (const [tid, start, dur] of lane.spans)
        threadRow(tid).events.push({kind: "slow_call", start, dur, title: "busy " + fmtMs(dur)});
    }
    for (const s of proc.stalls || [])
      threadRow(s.tid).events.push({
        kind: "stall", start: s.start_s * 1000, dur: s.duration_ms, stall: s,
        title: "stall " + fmtMs(s.duration_ms) + " in " + (s.call || "CPU-bound work") + " at " + topFrame(s.stack)});
    for (const c of proc.slow_calls || [])
      if (!spanned(c.tid))
        threadRow(c.tid).events.push({
          kind: "slow_call", start: c.start_s * 1000, dur: c.duration_ms,
          title: (c.call || "call") + " " + fmtMs(c.duration_ms) + " at " + topFrame(c.stack)});
    for (const l of proc.locks || [])
      for (const w of (l.idle ? [] : l.waits || []))
        if (!spanned(w.tid))
          threadRow(w.tid).events.push({
            kind: "lock_wait", start: w.start_s * 1000, dur: w.duration_ms,
            title: "waited " + fmtMs(w.duration_ms) + " for " + (l.symbol || l.object)});
    // A pool's threads follow its lane; threads of no pool come last.
    const all = [...rows.values()], out = [];
    for (const r of all.filter((r) => r.loop)) out.push(r);
    for (const r of all.filter((r) => r.pool)) {
      out.push(r);
      for (const t of all.filter((x) => x.inPool === r.pool.id)) out.push(Object.assign(t, {lane: r}));
    }
    for (const r of all.filter((r) => !r.loop && !r.pool && r.inPool == null && r.events.length)) out.push(r);
    return out;
  }

  // Busy workers of a pool lane over [lo, hi) in n buckets: the most busy at
  // once in each, all of them inside a saturation span.
  function laneLevels(r, lo, hi, n) {
    if (!r.steps) {
      const edges = [];
      for (const [, start, dur] of r.spans) edges.push([start, 1], [start + dur, -1]);
      edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      let level = 0;
      r.steps = edges.map(([t, d]) => [t, (level += d)]);
    }
    const st = r.steps, out = new Array(n).fill(0), w = (hi - lo) / n;
    let i = 0, level = 0;
    while (i < st.length && st[i][0] <= lo) level = st[i++][1];
    for (let b = 0; b < n; b++) {
      const end = lo + (b + 1) * w;
      let m = level;
      while (i < st.length && st[i][0] < end) { level = st[i++][1]; m = Math.max(m, level); }
      out[b] = Math.min(m, r.cap);
    }
    for (const e of r.events)
      for (let b = Math.max(0, Math.floor((e.start - lo) / w)); b < n && lo + b * w < e.start + e.dur; b++)
        out[b] = -r.cap;             // saturated: drawn in its own colour
    return out;
  }

  function timeline(proc, onSelect) {
    const rows = timelineRows(proc);
    const total = Math.max(proc.duration_s * 1000, 1,
      ...rows.flatMap((r) => r.events.map((e) => e.start + e.dur)));
    const view = {lo: 0, hi: total};
    const LABEL = 260, ROW = 26, AXIS = 22;
    const box = el("div", {class: "timeline"});
    const root = svg("svg", {role: "img", "aria-label": "timeline"});
    box.append(root);

    function draw() {
      const shown = rows.filter((r) => !r.hidden || (r.lane && r.lane.expanded));
      const height = AXIS + Math.max(shown.length, 1) * ROW + 4;
      const width = Math.max(box.clientWidth || 900, 400);
      root.setAttribute("height", String(height));
      root.setAttribute("viewBox", "0 0 " + width + " " + height);
      root.replaceChildren();
      const span = view.hi - view.lo, plot = width - LABEL - 8;
      const x = (ms) => LABEL + ((ms - view.lo) / span) * plot;
      // Axis: about eight ticks at a round step.
      const step = Math.pow(10, Math.floor(Math.log10(span / 8)));
      const tick = [1, 2, 5, 10].map((m) => m * step).find((s) => span / s <= 10) || step * 10;
      for (let t = Math.ceil(view.lo / tick) * tick; t <= view.hi; t += tick) {
        root.append(svg("line", {class: "grid", x1: x(t), x2: x(t), y1: AXIS - 4, y2: height}));
        const label = svg("text", {class: "axis", x: x(t) + 2, y: 14});
        label.textContent = fmtMs(t);
        root.append(label);
      }
      shown.forEach((r, i) => {
        const y = AXIS + i * ROW;
        root.append(svg("rect", {class: "lane" + (r.loop ? " loop" : "") + (r.pool ? " pool" : ""), x: LABEL,
          y: y + 3, width: plot, height: ROW - 6, "data-lane": r.pool ? "pool" : r.loop ? "loop" : "thread",
          "data-pool": r.pool ? String(r.pool.id) : (r.lane ? String(r.lane.pool.id) : "")}));
        const name = svg("text", {class: "row-label" + (r.pool ? " pool-label" : ""), x: r.lane ? 18 : 6,
          y: y + ROW / 2 + 4});
        let label = r.label;
        if (r.pool) {
          const peak = drawLane(r, y, plot);
          label = (r.expanded ? "▾ " : "▸ ") + r.pool.kind + " pool " + r.pool.id + ": " + peak + "/" + r.cap
            + (r.partial ? "+" : "") + " busy at most";
          name.addEventListener("click", () => { r.expanded = !r.expanded; draw(); });
          const tip = svg("title");
          tip.textContent = r.label + ", " + r.pool.threads + " threads: click to show or hide them";
          name.append(tip);
        }
        name.append(document.createTextNode(label.length > 40 ? label.slice(0, 39) + "…" : label));
        root.append(name);
        if (r.pool) return;
        for (const e of r.events) {
          if (e.start + e.dur < view.lo || e.start > view.hi) continue;
          const x0 = Math.max(x(e.start), LABEL), x1 = Math.min(x(e.start + e.dur), LABEL + plot);
          const rect = svg("rect", {class: "ev " + e.kind + (e.selected ? " selected" : ""), x: x0, y: y + 5,
            width: Math.max(x1 - x0, 2), height: ROW - 10, "data-kind": e.kind});
          const tip = svg("title");
          tip.textContent = e.title;
          rect.append(tip);
          rect.addEventListener("click", () => {
            rows.forEach((rr) => rr.events.forEach((ee) => { ee.selected = ee === e; }));
            draw();
            if (e.stall) onSelect(e.stall);
          });
          root.append(rect);
        }
      });
      if (!shown.length) {
        const t = svg("text", {class: "axis", x: LABEL, y: AXIS + 16});
        t.textContent = "no loop thread and no recorded event";
        root.append(t);
      }
    }

    // A pool lane: the share of its threads busy, as high bars, saturated
    // stretches in the saturation colour; the label says the peak.
    function drawLane(r, y, plot) {
      const n = Math.max(Math.floor(plot / 3), 1), lv = laneLevels(r, view.lo, view.hi, n);
      const w = plot / n, h = ROW - 8;
      let peak = 0;
      for (let b = 0; b < n; ) {
        let e = b;
        while (e < n && lv[e] === lv[b]) e++;
        const level = Math.abs(lv[b]);
        peak = Math.max(peak, level);
        if (level > 0) {
          const bh = Math.max(h * level / r.cap, 1);
          const rect = svg("rect", {class: "busy" + (lv[b] < 0 ? " saturated" : ""), x: LABEL + b * w,
            y: y + 4 + h - bh, width: (e - b) * w, height: bh});
          const tip = svg("title");
          tip.textContent = level + "/" + r.cap + " threads busy" + (lv[b] < 0 ? ", saturated: work waited" : "");
          rect.append(tip);
          root.append(rect);
        }
        b = e;
      }
      return peak;
    }

    function zoom(factor, centre) {
      const span = view.hi - view.lo, c = centre == null ? view.lo + span / 2 : centre;
      const ns = Math.min(Math.max(span * factor, 0.05), total);
      view.lo = Math.max(0, c - (c - view.lo) * (ns / span));
      view.hi = Math.min(total, view.lo + ns);
      view.lo = Math.max(0, view.hi - ns);
      draw();
    }
    function msAt(clientX) {
      const r = root.getBoundingClientRect(), width = r.width;
      return view.lo + ((clientX - r.left - LABEL * (width / Math.max(box.clientWidth, 1))) /
        (width - LABEL - 8)) * (view.hi - view.lo);
    }
    box.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      zoom(ev.deltaY < 0 ? 0.8 : 1.25, msAt(ev.clientX));
    }, {passive: false});
    let drag = null;
    box.addEventListener("mousedown", (ev) => { drag = {x: ev.clientX, lo: view.lo, hi: view.hi}; });
    window.addEventListener("mouseup", () => { drag = null; });
    window.addEventListener("mousemove", (ev) => {
      if (!drag) return;
      const per = (drag.hi - drag.lo) / Math.max(box.clientWidth - LABEL, 1);
      const shift = Math.min(Math.max((drag.x - ev.clientX) * per, -drag.lo), total - drag.hi);
      view.lo = drag.lo + shift;
      view.hi = drag.hi + shift;
      draw();
    });
    window.addEventListener("resize", draw);
    const zoomToStalls = () => {
      const st = rows.filter((r) => !r.hidden).flatMap((r) => r.events);
      if (!st.length) return;
      const lo = Math.min(...st.map((e) => e.start)), hi = Math.max(...st.map((e) => e.start + e.dur));
      const pad = Math.max((hi - lo) * 0.1, 5);
      view.lo = Math.max(0, lo - pad);
      view.hi = Math.min(total, hi + pad);
      draw();
    };
    const toolbar = el("div", {class: "toolbar"}, [
      el("button", {text: "+", title: "zoom in", onclick: () => zoom(0.5)}),
      el("button", {text: "−", title: "zoom out", onclick: () => zoom(2)}),
      el("button", {text: "events", title: "zoom to the recorded events", onclick: zoomToStalls}),
      el("button", {text: "reset", onclick: () => { view.lo = 0; view.hi = total; draw(); }}),
      el("span", {class: "muted", text: "wheel to zoom, drag to pan, click a stall for its stack, a pool for its threads"}),
      el("span", {class: "legend muted"}, [
        el("span", {style: "background: var(--stall)"}), document.createTextNode("stall"),
        el("span", {style: "background: var(--slow)"}), document.createTextNode("slow call"),
        el("span", {style: "background: var(--busy)"}), document.createTextNode("pool threads busy"),
        el("span", {style: "background: var(--sat)"}), document.createTextNode("pool saturated"),
        el("span", {style: "background: var(--lock)"}), document.createTextNode("lock wait")]),
    ]);
    requestAnimationFrame(draw);
    draw();
    return el("div", {}, [toolbar, box]);
  }

  // ---- flame graph ----------------------------------------------------------

  // A tree of stalled time by stack from the folded stacks the `folded`
  // format prints (report_html_views.c): by default in the flame view, which
  // starts where the program's own code is entered, so its frames are the
  // first rows; all: every frame from _start on. The process name that
  // roots each folded line is this section's already.
  function flameTree(proc, all) {
    const root = {name: "all stalled time", value: 0, children: new Map(), parent: null};
    const flame = (views[proc.pid] || {}).flame || {};
    for (const line of String((all ? flame.all : flame.view) || "").split("\n")) {
      const cut = line.lastIndexOf(" ");
      if (cut <= 0) continue;
      const ms = Number(line.slice(cut + 1)), names = line.slice(0, cut).split(";").slice(1);
      let node = root;
      root.value += ms;
      for (const name of names) {
        if (!node.children.has(name)) node.children.set(name, {name, value: 0, children: new Map(), parent: node});
        node = node.children.get(name);
        node.value += ms;
      }
    }
    return root;
  }

  function colour(name) {
    let h = 0;
    for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    return "hsl(" + (10 + (h % 40)) + ", " + (70 + (h >> 8) % 20) + "%, " + (60 + (h >> 16) % 15) + "%)";
  }

  function flameGraph(proc) {
    let tree = flameTree(proc, false);
    const box = el("div", {class: "flame", id: "flame-" + proc.pid});
    const H = 20;
    let focus = tree;

    function depthOf(node) {
      let d = 0;
      for (let n = node; n.children.size; ) {
        let best = 0;
        for (const c of n.children.values()) best = Math.max(best, depthOf(c));
        return d + 1 + best;
      }
      return d;
    }

    function draw() {
      box.replaceChildren();
      // The focused frame's ancestors span the whole width, as does it.
      const path = [];
      for (let n = focus; n; n = n.parent) path.unshift(n);
      const rows = path.length + depthOf(focus);
      box.style.height = rows * H + 4 + "px";
      path.forEach((n, i) => place(n, 0, 100, i, n !== focus));
      const walk = (node, left, width, depth) => {
        let x = left;
        for (const c of [...node.children.values()].sort((a, b) => a.name.localeCompare(b.name))) {
          const w = width * (c.value / node.value);
          if (w >= 0.1) place(c, x, w, depth, false);
          if (w >= 0.1) walk(c, x, w, depth + 1);
          x += w;
        }
      };
      walk(focus, 0, 100, path.length);
    }

    function place(node, left, width, depth, dim) {
      const pct = tree.value ? (100 * node.value / tree.value).toFixed(1) : "0";
      const title = node.name + " — " + fmtMs(node.value) + " (" + pct + "% of stalled time)";
      const d = el("div", {class: "fg-frame" + (node === tree ? " root" : "") + (dim ? " dim" : ""),
        title, "data-name": node.name, "data-ms": node.value.toFixed(3), "data-depth": String(depth),
        text: node.name});
      d.style.left = left + "%";
      d.style.width = "calc(" + width + "% - 1px)";
      d.style.top = depth * H + "px";
      if (node !== tree) d.style.background = colour(node.name);
      d.addEventListener("click", () => {
        focus = node === focus && node.parent ? node.parent : node;
        box.dataset.focus = focus.name;
        draw();
      });
      box.append(d);
    }

    box.dataset.focus = tree.name;
    box.dataset.view = "flame";
    draw();
    if (!tree.value) return el("p", {class: "empty", text: "No stalled time to draw."});
    const toggle = el("input", {type: "checkbox", class: "all-frames", onchange: () => {
      tree = flameTree(proc, toggle.checked);
      focus = tree;
      box.dataset.focus = tree.name;
      box.dataset.view = toggle.checked ? "all" : "flame";
      draw();
    }});
    return el("div", {}, [el("p", {class: "muted", text: "Stalled time by stack, the program's own outermost frame "
      + "on top (the runtime's machinery left out, as in the text report); width is time. Click a frame to zoom "
      + "into it, click it again (or a frame above) to zoom out."}),
      el("label", {class: "toolbar muted"}, [toggle, document.createTextNode("all frames (from _start, "
        + "interpreter and framework included)")]), box]);
  }

  // ---- tables ---------------------------------------------------------------

  function table(headers, rows, empty) {
    if (!rows.length) return el("p", {class: "empty", text: empty});
    const head = el("tr", {}, headers.map((h) => el("th", {class: h.num ? "num" : "", text: h.t})));
    return el("table", {}, [el("thead", {}, [head]), el("tbody", {}, rows)]);
  }

  function stallsTable(proc) {
    const rows = (proc.stalls || []).map((s, i) => el("tr", {id: "stall-" + proc.pid + "-" + i,
      class: "stall-row"}, [
      el("td", {class: "num", text: (s.start_s * 1000).toFixed(1) + " ms"}),
      el("td", {class: "num", text: fmtMs(s.duration_ms) + (s.in_progress ? " (running at the end)" : "")}),
      el("td", {text: threadLabel(proc, s.tid)}),
      el("td", {class: "mono", text: s.call || "CPU-bound"}),
      el("td", {}, [el("details", {}, [el("summary", {class: "mono", text: topFrame(s.stack)}),
        stackList(s.stack),
        (s.samples || []).length ? el("p", {class: "muted", text: s.samples.length + " stack(s) sampled while "
          + "it ran"}) : null])]),
    ]));
    return table([{t: "start", num: 1}, {t: "duration", num: 1}, {t: "thread"}, {t: "call"}, {t: "where"}], rows,
      "No stall was recorded.");
  }

  function poolsTable(proc) {
    const rows = (proc.pools || []).map((p) => {
      const busy = (p.busy_in || [])[0];
      const q = p.queue_wait_ms;
      return el("tr", {}, [
        el("td", {text: poolTitle(p)}),
        el("td", {class: "num", text: String(p.threads)}),
        el("td", {class: "num", text: (100 * (p.busy_ratio || 0)).toFixed(1) + "%"}),
        el("td", {class: "num", text: fmtMs(1000 * (p.saturated_s || 0))}),
        el("td", {class: "num", text: q ? fmtMs(q.p99 || 0) + (q.exact ? "" : " (est.)") : "—"}),
        el("td", {}, busy ? [el("details", {}, [el("summary", {class: "mono",
          text: (busy.call || "CPU") + " " + fmtMs(busy.total_ms) + " at " + topFrame(busy.stack)}),
          stackList(busy.stack)])] : []),
      ]);
    });
    return table([{t: "pool"}, {t: "threads", num: 1}, {t: "busy", num: 1}, {t: "saturated", num: 1},
      {t: "queue wait p99", num: 1}, {t: "busy in"}], rows, "No thread pool was seen.");
  }

  function locksTable(proc) {
    // A runtime thread's timed sleep on its own object is not a lock anyone waited for.
    const locks = (proc.locks || []).filter((l) => !l.idle).sort((a, b) => b.wait_total_ms - a.wait_total_ms);
    const rows = locks.map((l) => el("tr", {}, [
      el("td", {class: "mono", text: l.symbol || l.object}),
      el("td", {text: l.kind}),
      el("td", {class: "num", text: String(l.contentions)}),
      el("td", {class: "num", text: fmtMs(l.wait_total_ms)}),
      el("td", {class: "num", text: fmtMs(l.wait_max_ms)}),
      el("td", {}, [el("details", {}, [el("summary", {class: "mono", text: topFrame(l.stack)}),
        stackList(l.stack)])]),
    ]));
    return table([{t: "lock"}, {t: "kind"}, {t: "contentions", num: 1}, {t: "waited", num: 1}, {t: "longest", num: 1},
      {t: "where"}], rows, "No contended lock was recorded.");
  }

  // ---- page -----------------------------------------------------------------

  function processSection(proc) {
    const cmd = (proc.argv || []).join(" ") || proc.exe;
    const facts = el("div", {class: "facts muted"}, [
      el("span", {text: "pid " + proc.pid}),
      el("span", {text: fmtMs(proc.duration_s * 1000) + " recorded"}),
      el("span", {text: "stall threshold " + fmtMs(proc.threshold_ms || 0)}),
      el("span", {class: proc.complete ? "" : "warn", text: proc.complete ? "complete"
        : "incomplete: the process did not exit cleanly"}),
      proc.dropped_events ? el("span", {class: "warn", text: proc.dropped_events + " events dropped"}) : null,
    ]);
    const stalls = stallsTable(proc);
    const select = (stall) => {
      const i = (proc.stalls || []).indexOf(stall);
      document.querySelectorAll("tr.stall-row.selected").forEach((r) => r.classList.remove("selected"));
      const tr = document.getElementById("stall-" + proc.pid + "-" + i);
      if (tr) {
        tr.classList.add("selected");
        tr.querySelector("details").open = true;
        tr.scrollIntoView({block: "nearest"});
      }
    };
    // A healthy recording shows its timeline and pools, not empty sections.
    const ok = healthy(proc), anyLock = (proc.locks || []).some((l) => !l.idle);
    return el("section", {class: "process" + (ok ? " healthy" : ""), "data-pid": String(proc.pid)}, [
      el("h2", {class: "mono", text: cmd}), facts,
      el("h3", {text: "Timeline"}), timeline(proc, select),
      ok ? null : el("h3", {text: "Flame graph of stalled time"}), ok ? null : flameGraph(proc),
      ok ? null : el("h3", {text: "Stalls (" + (proc.stalls || []).length + ")"}), ok ? null : stalls,
      (proc.pools || []).length ? el("h3", {text: "Thread pools"}) : null,
      (proc.pools || []).length ? poolsTable(proc) : null,
      ok || !anyLock ? null : el("h3", {text: "Locks waited for"}), ok || !anyLock ? null : locksTable(proc),
    ]);
  }

  const procs = report.processes || [];
  app.append(el("h1", {text: "stalltrace report"}), diagnosisBox(procs));
  for (const p of procs) app.append(processSection(p));
  document.body.dataset.rendered = "yes";
})();
