// report.js - draws the HTML report from the embedded JSON report: diagnosis,
// per-thread timelines (zoomable), a clickable flame graph and tables.
"use strict";

(function () {
  const report = JSON.parse(document.getElementById("stalltrace-data").textContent);
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

  // ---- diagnosis ------------------------------------------------------------

  function diagnosisBox(procs) {
    const items = [];
    for (const p of procs)
      for (const d of p.diagnosis || [])
        items.push(el("p", {}, [el("span", {class: "culprit", text: d.culprit.replace(/_/g, " ")}),
          document.createTextNode(d.summary + (procs.length > 1 ? " (pid " + p.pid + ")" : ""))]));
    if (!items.length)
      items.push(el("p", {text: "No event-loop stall, pool saturation or lock contention past the threshold "
        + "was recorded."}));
    return el("section", {class: "diagnosis" + (items.length && procs.some((p) => (p.diagnosis || []).length)
      ? "" : " ok"), id: "diagnosis"}, [el("h2", {text: "What to look at first"}), ...items]);
  }

  // ---- timeline -------------------------------------------------------------

  // Rows: loop threads first, then threads with slow calls, then pools.
  function timelineRows(proc) {
    const rows = new Map();
    const row = (key, label, loop) => {
      if (!rows.has(key)) rows.set(key, {key, label, loop, events: []});
      return rows.get(key);
    };
    for (const t of proc.threads || [])
      if (t.role === "loop")
        row("t" + t.tid, t.name + " " + t.tid + " (loop, " + (100 * t.loop.utilization).toFixed(1) + "% busy)", true);
    for (const s of proc.stalls || [])
      row("t" + s.tid, threadName(proc, s.tid) + " " + s.tid, false).events.push({
        kind: "stall", start: s.start_s * 1000, dur: s.duration_ms, stall: s,
        title: "stall " + fmtMs(s.duration_ms) + " in " + (s.call || "CPU-bound work") + " at " + topFrame(s.stack)});
    for (const c of proc.slow_calls || [])
      row("t" + c.tid, threadName(proc, c.tid) + " " + c.tid, false).events.push({
        kind: "slow_call", start: c.start_s * 1000, dur: c.duration_ms,
        title: (c.call || "call") + " " + fmtMs(c.duration_ms) + " at " + topFrame(c.stack)});
    for (const l of proc.locks || [])
      for (const w of l.waits || [])
        row("t" + w.tid, threadName(proc, w.tid) + " " + w.tid, false).events.push({
          kind: "lock_wait", start: w.start_s * 1000, dur: w.duration_ms,
          title: "waited " + fmtMs(w.duration_ms) + " for " + (l.symbol || l.object)});
    for (const p of proc.pools || [])
      for (const s of p.saturations || [])
        row("p" + p.id, "pool " + p.id + " (" + p.threads + " threads) saturated", false).events.push({
          kind: "saturation", start: s.start_s * 1000, dur: s.duration_ms,
          title: "pool " + p.id + " saturated for " + fmtMs(s.duration_ms)});
    return [...rows.values()];
  }

  function timeline(proc, onSelect) {
    const rows = timelineRows(proc);
    const total = Math.max(proc.duration_s * 1000, 1,
      ...rows.flatMap((r) => r.events.map((e) => e.start + e.dur)));
    const view = {lo: 0, hi: total};
    const LABEL = 260, ROW = 26, AXIS = 22;
    const box = el("div", {class: "timeline"});
    const height = AXIS + Math.max(rows.length, 1) * ROW + 4;
    const root = svg("svg", {height: String(height), role: "img", "aria-label": "timeline"});
    box.append(root);

    function draw() {
      const width = Math.max(box.clientWidth || 900, 400);
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
      rows.forEach((r, i) => {
        const y = AXIS + i * ROW;
        root.append(svg("rect", {class: "lane" + (r.loop ? " loop" : ""), x: LABEL, y: y + 3, width: plot,
          height: ROW - 6}));
        const name = svg("text", {class: "row-label", x: 6, y: y + ROW / 2 + 4});
        name.textContent = r.label.length > 40 ? r.label.slice(0, 39) + "…" : r.label;
        root.append(name);
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
      if (!rows.length) {
        const t = svg("text", {class: "axis", x: LABEL, y: AXIS + 16});
        t.textContent = "no loop thread and no recorded event";
        root.append(t);
      }
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
      const st = rows.flatMap((r) => r.events);
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
      el("span", {class: "muted", text: "wheel to zoom, drag to pan, click a stall for its stack"}),
      el("span", {class: "legend muted"}, [
        el("span", {style: "background: var(--stall)"}), document.createTextNode("stall"),
        el("span", {style: "background: var(--slow)"}), document.createTextNode("slow call"),
        el("span", {style: "background: var(--sat)"}), document.createTextNode("pool saturated"),
        el("span", {style: "background: var(--lock)"}), document.createTextNode("lock wait")]),
    ]);
    requestAnimationFrame(draw);
    draw();
    return el("div", {}, [toolbar, box]);
  }

  // ---- flame graph ----------------------------------------------------------

  // A tree of stalled time by stack, outermost frame at the root; a CPU-bound
  // stall's time is split over the stacks sampled while it ran.
  function flameTree(proc) {
    const root = {name: "all stalled time", value: 0, children: new Map(), parent: null};
    const add = (stack, ms) => {
      let node = root;
      root.value += ms;
      for (let i = stack.length - 1; i >= 0; i--) {
        const name = frameLabel(stack[i]);
        if (!node.children.has(name))
          node.children.set(name, {name, frame: stack[i], value: 0, children: new Map(), parent: node});
        node = node.children.get(name);
        node.value += ms;
      }
    };
    for (const s of proc.stalls || []) {
      const samples = (!s.call && s.samples && s.samples.length) ? s.samples : null;
      if (samples) for (const x of samples) add(x.stack || [], s.duration_ms / samples.length);
      else add(s.stack && s.stack.length ? s.stack : [{function: s.call || "[no stack]"}], s.duration_ms);
    }
    return root;
  }

  function colour(name) {
    let h = 0;
    for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    return "hsl(" + (10 + (h % 40)) + ", " + (70 + (h >> 8) % 20) + "%, " + (60 + (h >> 16) % 15) + "%)";
  }

  function flameGraph(proc) {
    const tree = flameTree(proc);
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
      const f = node.frame;
      const title = (f ? frameText(f) : node.name) + " — " + fmtMs(node.value) + " (" + pct + "% of stalled time)";
      const d = el("div", {class: "fg-frame" + (node === tree ? " root" : "") + (dim ? " dim" : ""),
        title, "data-name": node.name, "data-ms": node.value.toFixed(3), text: node.name});
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
    draw();
    if (!tree.value) return el("p", {class: "empty", text: "No stalled time to draw."});
    return el("div", {}, [el("p", {class: "muted", text: "Stalled time by stack, outermost frame on top; width is "
      + "time. Click a frame to zoom into it, click it again (or a frame above) to zoom out."}), box]);
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
      el("td", {text: threadName(proc, s.tid) + " " + s.tid}),
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
        el("td", {text: String(p.id)}),
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
    const locks = [...(proc.locks || [])].sort((a, b) => b.wait_total_ms - a.wait_total_ms);
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
    return el("section", {class: "process", "data-pid": String(proc.pid)}, [
      el("h2", {class: "mono", text: cmd}), facts,
      el("h3", {text: "Timeline"}), timeline(proc, select),
      el("h3", {text: "Flame graph of stalled time"}), flameGraph(proc),
      el("h3", {text: "Stalls (" + (proc.stalls || []).length + ")"}), stalls,
      el("h3", {text: "Thread pools"}), poolsTable(proc),
      el("h3", {text: "Locks"}), locksTable(proc),
    ]);
  }

  const procs = report.processes || [];
  app.append(el("h1", {text: "stalltrace report"}), diagnosisBox(procs));
  for (const p of procs) app.append(processSection(p));
  document.body.dataset.rendered = "yes";
})();
