// The operator overview: fetch /api/stats/overview for the chosen range and draw SVG charts.
// Plain SVG built here (no charting library: nothing may come from a CDN). Every mark
// carries data-series / data-bucket / data-value, so a test can read the chart back.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  // Drawn at the container's own pixel width, so text stays 11 px on any screen.
  const H = 220, M = { top: 14, right: 14, bottom: 30, left: 48 }, MAX_BAR = 56;
  const widthOf = (container) => Math.max(320, Math.round(container.clientWidth || 640));
  const COLORS = {
    answered: "#1f6feb", busy: "#f08c00", refused: "#c92a2a", unanswered: "#adb5bd",
    minutes: "#2b8a3e", p50: "#1f6feb", p95: "#d9480f",
  };
  const PROVIDER_COLORS = ["#1f6feb", "#d9480f", "#2b8a3e", "#7048e8", "#0c8599", "#e8590c", "#5d6875"];
  const KNOWN_PROVIDERS = ["personaplex", "polargrid", "fal"]; // stable colors across ranges
  const REASON_COLORS = {
    caller_hangup: "#1f6feb", caller_dropped: "#4dabf7",
    model_failed: "#d9480f", model_ended: "#f76707", model_stalled: "#ff922b",
    busy: "#f08c00", rate_limited: "#c92a2a", crashed: "#862e9c", bridge_error: "#a61e4d",
  };
  const root = document.getElementById("overview");
  const form = document.getElementById("range");
  const summary = document.getElementById("range-summary");
  const kpis = document.getElementById("kpis");

  // -- formatting -------------------------------------------------------------
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const pad = (n) => String(n).padStart(2, "0");
  function dayLabel(d) { return MONTHS[d.getUTCMonth()] + " " + d.getUTCDate(); }
  function bucketLabel(iso, bucket) {
    const d = new Date(iso);
    return bucket === "day" ? dayLabel(d) + " " + d.getUTCFullYear()
      : dayLabel(d) + ", " + pad(d.getUTCHours()) + ":00–" + pad((d.getUTCHours() + 1) % 24) + ":00 UTC";
  }
  function tickLabel(iso, bucket, first) {
    const d = new Date(iso);
    if (bucket === "day" || (d.getUTCHours() === 0 && !first)) return dayLabel(d);
    return pad(d.getUTCHours()) + ":00";
  }
  function num(v, digits) {
    if (v === null || v === undefined) return "—";
    return v.toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  }
  function seconds(v) {
    if (v === null || v === undefined) return "—";
    if (v < 10) return v.toFixed(2) + " s";
    if (v < 600) return v.toFixed(1) + " s";
    return (v / 60).toFixed(1) + " min";
  }
  function toInput(iso) { return iso.slice(0, 16); } // datetime-local, UTC

  // -- svg helpers --------------------------------------------------------------
  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }
  function text(parent, x, y, content, attrs) {
    const node = el("text", Object.assign({ x, y }, attrs || {}), parent);
    node.textContent = content;
    return node;
  }
  function niceTicks(max, integer) {
    if (!(max > 0)) max = integer ? 1 : 1;
    let step = Math.pow(10, Math.floor(Math.log10(max / 4)));
    const err = max / 4 / step;
    step *= err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1;
    if (integer) step = Math.max(1, Math.round(step));
    const top = Math.ceil(max / step) * step;
    const ticks = [];
    for (let v = 0; v <= top + step / 2; v += step) ticks.push(v);
    return ticks;
  }

  // A frame: y grid and labels, x labels every few buckets, a hover band and a tooltip.
  function frame(container, data, yMax, yFormat, integer, describe) {
    container.replaceChildren();
    const W = widthOf(container);
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "chart-svg", role: "img" }, container);
    const plotW = W - M.left - M.right, plotH = H - M.top - M.bottom;
    const ticks = niceTicks(yMax, integer);
    const top = ticks[ticks.length - 1];
    const step = ticks[1] - ticks[0];
    const digits = step >= 1 ? 0 : Math.min(3, Math.ceil(-Math.log10(step) - 1e-9));
    const y = (v) => M.top + plotH - (v / top) * plotH;
    const grid = el("g", { class: "grid" }, svg);
    for (const t of ticks) {
      el("line", { x1: M.left, x2: W - M.right, y1: y(t), y2: y(t) }, grid);
      text(grid, M.left - 6, y(t) + 4, yFormat(t, digits), { "text-anchor": "end", class: "tick" });
    }
    const n = data.buckets.length;
    const slot = plotW / n;
    const every = Math.max(1, Math.ceil(64 / slot));
    const axis = el("g", { class: "axis" }, svg);
    el("line", { x1: M.left, x2: W - M.right, y1: y(0), y2: y(0) }, axis);
    data.buckets.forEach((b, i) => {
      if (i % every) return;
      const x = M.left + slot * i + slot / 2;
      el("line", { x1: x, x2: x, y1: y(0), y2: y(0) + 4 }, axis);
      text(axis, x, H - M.bottom + 17, tickLabel(b.start, data.bucket, i === 0), { "text-anchor": "middle", class: "tick" });
    });
    const band = el("rect", { class: "hover-band", x: 0, y: M.top, width: slot, height: plotH, visibility: "hidden" }, svg);
    const tip = document.createElement("div");
    tip.className = "tooltip";
    tip.hidden = true;
    container.appendChild(tip);
    svg.addEventListener("mousemove", (event) => {
      const box = svg.getBoundingClientRect();
      const vx = ((event.clientX - box.left) / box.width) * W;
      const i = Math.floor((vx - M.left) / slot);
      if (i < 0 || i >= n) { band.setAttribute("visibility", "hidden"); tip.hidden = true; return; }
      band.setAttribute("x", M.left + slot * i);
      band.setAttribute("visibility", "visible");
      tip.replaceChildren();
      const head = document.createElement("strong");
      head.textContent = bucketLabel(data.buckets[i].start, data.bucket);
      tip.appendChild(head);
      for (const [label, value, color] of describe(data.buckets[i], i)) {
        const row = document.createElement("div");
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = color;
        row.append(swatch, label + ": " + value);
        tip.appendChild(row);
      }
      tip.hidden = false;
      const left = ((M.left + slot * (i + 0.5)) / W) * box.width;
      tip.style.left = Math.min(Math.max(0, left - tip.offsetWidth / 2), box.width - tip.offsetWidth) + "px";
    });
    svg.addEventListener("mouseleave", () => { band.setAttribute("visibility", "hidden"); tip.hidden = true; });
    return { svg, y, slot, plotH, W };
  }

  function legend(container, items) {
    const list = document.createElement("ul");
    list.className = "chart-legend";
    for (const [label, color] of items) {
      const li = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = color;
      li.append(swatch, label);
      list.appendChild(li);
    }
    container.appendChild(list);
  }

  // Stacked bars: series = [{key, label, color, value(bucket)}].
  function stackedBars(container, name, data, series, yFormat, integer, tipFormat) {
    const totals = data.buckets.map((b) => series.reduce((sum, s) => sum + s.value(b), 0));
    const f = frame(container, data, Math.max(0, ...totals), yFormat, integer,
      (b) => series.map((s) => [s.label, tipFormat(s.value(b)), s.color]));
    f.svg.dataset.chart = name;
    const width = Math.min(MAX_BAR, Math.max(1, f.slot * 0.78));
    const marks = el("g", { class: "marks" }, f.svg);
    data.buckets.forEach((b, i) => {
      let base = 0;
      const x = M.left + f.slot * i + (f.slot - width) / 2;
      for (const s of series) {
        const v = s.value(b);
        if (!(v > 0)) continue;
        const rect = el("rect", {
          x, width, y: f.y(base + v), height: Math.max(0.5, f.y(base) - f.y(base + v)), fill: s.color,
          "data-series": s.key, "data-bucket": b.start, "data-value": v,
        }, marks);
        el("title", {}, rect).textContent = `${s.label}: ${tipFormat(v)}`;
        base += v;
      }
    });
    legend(container, series.map((s) => [s.label, s.color]));
  }

  // Lines with dots; a bucket without a value breaks the line.
  function lines(container, name, data, series, yFormat, tipFormat) {
    const values = data.buckets.flatMap((b) => series.map((s) => s.value(b)).filter((v) => v !== null));
    const f = frame(container, data, Math.max(0, ...values), yFormat, false,
      (b) => series.map((s) => [s.label, s.value(b) === null ? "no calls" : tipFormat(s.value(b)), s.color]));
    f.svg.dataset.chart = name;
    const marks = el("g", { class: "marks" }, f.svg);
    for (const s of series) {
      let path = "";
      let open = false;
      data.buckets.forEach((b, i) => {
        const v = s.value(b);
        if (v === null) { open = false; return; }
        const x = M.left + f.slot * (i + 0.5);
        path += (open ? "L" : "M") + x.toFixed(1) + " " + f.y(v).toFixed(1);
        open = true;
      });
      if (path) el("path", { d: path, fill: "none", stroke: s.color, "stroke-width": 2, "stroke-linejoin": "round" }, marks);
      data.buckets.forEach((b, i) => {
        const v = s.value(b);
        if (v === null) return;
        const dot = el("circle", {
          cx: M.left + f.slot * (i + 0.5), cy: f.y(v), r: 3, fill: s.color,
          "data-series": s.key, "data-bucket": b.start, "data-value": v,
        }, marks);
        el("title", {}, dot).textContent = `${s.label}: ${tipFormat(v)}`;
      });
    }
    legend(container, series.map((s) => [s.label, s.color]));
  }

  // Horizontal bars, one per category, largest first.
  function hbars(container, name, rows) {
    container.replaceChildren();
    const W = widthOf(container);
    const rowH = 26, labelW = 150, height = Math.max(1, rows.length) * rowH + 8;
    const svg = el("svg", { viewBox: `0 0 ${W} ${height}`, width: W, height, class: "chart-svg", role: "img", "data-chart": name }, container);
    const max = Math.max(1, ...rows.map((r) => r.value));
    const barMax = W - labelW - 60;
    rows.forEach((r, i) => {
      const y = 4 + i * rowH;
      text(svg, labelW - 8, y + rowH / 2 + 4, r.label, { "text-anchor": "end", class: "label" });
      const width = Math.max(1, (r.value / max) * barMax);
      const rect = el("rect", {
        x: labelW, y: y + 4, width, height: rowH - 8, rx: 3, fill: r.color,
        "data-series": r.key, "data-value": r.value,
      }, svg);
      el("title", {}, rect).textContent = `${r.label}: ${r.value} (${r.share})`;
      text(svg, labelW + width + 6, y + rowH / 2 + 4, `${num(r.value, 0)} · ${r.share}`, { class: "value" });
    });
  }

  function empty(container, message) {
    container.replaceChildren();
    const p = document.createElement("p");
    p.className = "note";
    p.textContent = message;
    container.appendChild(p);
  }

  // -- the page -------------------------------------------------------------------
  function tiles(data) {
    const t = data.totals;
    const items = [
      ["Calls", num(t.calls, 0), `${num(t.answered, 0)} answered`],
      ["Minutes", num(t.minutes, 1), "on the phone"],
      ["Model socket", seconds(t.model_socket_seconds), "billed time"],
      ["First agent audio", seconds(t.first_agent_audio.p50), `p50 · p95 ${seconds(t.first_agent_audio.p95)}`],
      ["Busy", num(t.busy, 0), "no free slot"],
      ["Refused", num(t.refused, 0), "toll-fraud guard"],
    ];
    kpis.replaceChildren(...items.map(([label, value, sub]) => {
      const div = document.createElement("div");
      div.className = "kpi";
      div.dataset.kpi = label.toLowerCase().replace(/ /g, "-");
      const l = document.createElement("span"); l.className = "label"; l.textContent = label;
      const v = document.createElement("span"); v.className = "value"; v.textContent = value;
      const s = document.createElement("span"); s.className = "sub"; s.textContent = sub;
      div.append(l, v, s);
      return div;
    }));
  }

  function providerColor(name, i) {
    const known = KNOWN_PROVIDERS.indexOf(name);
    return PROVIDER_COLORS[known >= 0 ? known : (KNOWN_PROVIDERS.length + i) % PROVIDER_COLORS.length];
  }

  function render(data) {
    for (const span of document.querySelectorAll(".per")) span.textContent = data.bucket;
    tiles(data);
    const charts = ["calls", "minutes", "socket", "first-audio", "refusals", "end-reasons"]
      .map((id) => document.getElementById("chart-" + id));
    if (!data.totals.calls) {
      charts.forEach((c) => empty(c, "No calls in this range."));
      return;
    }
    const count = (v) => num(v, 0);
    stackedBars(charts[0], "calls", data, [
      { key: "answered", label: "answered", color: COLORS.answered, value: (b) => b.answered },
      { key: "busy", label: "busy", color: COLORS.busy, value: (b) => b.busy },
      { key: "refused", label: "refused", color: COLORS.refused, value: (b) => b.refused },
      { key: "unanswered", label: "unanswered", color: COLORS.unanswered, value: (b) => b.unanswered },
    ], count, true, count);
    stackedBars(charts[1], "minutes", data, [
      { key: "minutes", label: "minutes", color: COLORS.minutes, value: (b) => b.minutes },
    ], (v, d) => num(v, d), false, (v) => num(v, 2) + " min");
    const providers = data.providers.map((p, i) => ({
      key: p.provider, label: `${p.provider} (${seconds(p.model_socket_seconds)})`,
      color: providerColor(p.provider, i), value: (b) => b.model_socket_seconds[p.provider] || 0,
    }));
    if (providers.length) {
      const perMinute = Math.max(0, ...data.buckets.map((b) => Object.values(b.model_socket_seconds).reduce((a, c) => a + c, 0))) >= 600;
      stackedBars(charts[2], "socket", data, providers,
        perMinute ? (v) => num(v / 60, 1) + "m" : (v, d) => num(v, d) + "s", false, seconds);
    } else {
      empty(charts[2], "No model sessions in this range.");
    }
    if (data.totals.first_agent_audio.count) {
      lines(charts[3], "first-audio", data, [
        { key: "p50", label: "p50", color: COLORS.p50, value: (b) => b.first_agent_audio.p50 },
        { key: "p95", label: "p95", color: COLORS.p95, value: (b) => b.first_agent_audio.p95 },
      ], (v, d) => num(v, d) + "s", seconds);
    } else {
      empty(charts[3], "No agent audio in this range.");
    }
    stackedBars(charts[4], "refusals", data, [
      { key: "busy", label: "busy", color: COLORS.busy, value: (b) => b.busy },
      { key: "refused", label: "refused", color: COLORS.refused, value: (b) => b.refused },
    ], count, true, count);
    const total = data.totals.calls;
    hbars(charts[5], "end-reasons", data.end_reasons.map((r) => ({
      key: r.end_reason, label: r.end_reason.replace(/_/g, " "), value: r.calls,
      color: REASON_COLORS[r.end_reason] || "#868e96",
      share: Math.round((100 * r.calls) / total) + "%",
    })));
  }

  function query() {
    const params = new URLSearchParams(window.location.search);
    const out = new URLSearchParams();
    for (const key of ["from", "to", "bucket"]) if (params.get(key)) out.set(key, params.get(key));
    return out;
  }

  async function load() {
    const params = query();
    if (params.get("bucket")) form.elements.bucket.value = params.get("bucket");
    const response = await fetch("/api/stats/overview?" + params, { credentials: "same-origin" });
    if (!response.ok) {
      let detail = "HTTP " + response.status;
      try { detail = (await response.json()).detail || detail; } catch (err) { /* not JSON */ }
      throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    const data = await response.json();
    form.elements.from.value = toInput(data.from);
    form.elements.to.value = toInput(data.to);
    form.elements.bucket.value = data.bucket;
    summary.textContent = `${num(data.totals.calls, 0)} calls from ${bucketLabel(data.from, "day")} ` +
      `${data.from.slice(11, 16)} to ${bucketLabel(data.to, "day")} ${data.to.slice(11, 16)} UTC, by the ${data.bucket}.`;
    render(data);
    root.dataset.state = "ready";
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(() => render(data), 150);
    });
  }

  for (const button of form.querySelectorAll("button[data-hours]")) {
    button.addEventListener("click", () => {
      const now = new Date();
      now.setUTCMinutes(0, 0, 0);
      const to = new Date(now.getTime() + 3600 * 1000);
      const from = new Date(to.getTime() - Number(button.dataset.hours) * 3600 * 1000);
      form.elements.from.value = toInput(from.toISOString());
      form.elements.to.value = toInput(to.toISOString());
      form.elements.bucket.value = button.dataset.bucket;
      form.submit();
    });
  }

  load().catch((err) => {
    summary.textContent = "Overview unavailable: " + err.message;
    summary.classList.add("error");
    root.dataset.state = "error";
  });
})();
