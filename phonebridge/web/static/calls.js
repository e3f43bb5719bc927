// The call list: fetch /api/calls with the search filters, redraw, poll for live calls.
"use strict";
(function () {
  const table = document.getElementById("calls");
  const body = table.querySelector("tbody");
  const summary = document.getElementById("summary");
  const newer = document.getElementById("newer");
  const older = document.getElementById("older");
  const pollMs = Number(table.dataset.pollMs) || 3000;
  const params = new URLSearchParams(location.search);
  const limit = 25;
  let offset = 0;
  let timer = null;

  function duration(call) {
    const s = call.duration_seconds ?? call.live_seconds;
    if (s == null) return "—";
    const m = Math.floor(s / 60);
    return m + ":" + (s % 60).toFixed(0).padStart(2, "0");
  }

  function cell(row, text, cls) {
    const td = row.insertCell();
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function render(page) {
    body.replaceChildren();
    for (const call of page.items) {
      const row = body.insertRow();
      row.dataset.callSid = call.call_sid;
      const started = new Date(call.started_at);
      const when = cell(row, "");
      const link = document.createElement("a");
      link.href = "/calls/" + encodeURIComponent(call.call_sid);
      link.textContent = started.toLocaleString();
      when.append(link);
      if (call.live) {
        const badge = document.createElement("span");
        badge.className = "badge live";
        badge.textContent = "live";
        when.append(badge);
        const listen = document.createElement("a");
        listen.href = "/calls/" + encodeURIComponent(call.call_sid) + "/listen";
        listen.className = "listen";
        listen.textContent = "listen";
        when.append(" ", listen);
      }
      cell(row, call.from_number || "—", "from");
      cell(row, call.to_number || "—", "to");
      cell(row, call.persona || "—", "persona");
      cell(row, duration(call), "duration");
      cell(row, call.live ? "in progress" : (call.end_reason || "—"), "reason");
    }
    const last = Math.min(offset + page.items.length, page.total);
    const live = page.items.filter((c) => c.live).length;
    summary.textContent = page.total === 0 ? "No calls yet." :
      `Calls ${offset + 1}–${last} of ${page.total}` + (live ? ` · ${live} live` : "");
    newer.disabled = offset === 0;
    older.disabled = offset + limit >= page.total;
  }

  async function refresh() {
    const query = new URLSearchParams();
    for (const key of ["number", "persona", "since", "until", "end_reason", "status"]) {
      const value = params.get(key);
      if (value) query.set(key, value);
    }
    query.set("limit", String(limit));
    query.set("offset", String(offset));
    try {
      const response = await fetch("/api/calls?" + query, { credentials: "same-origin" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      render(await response.json());
    } catch (err) {
      summary.textContent = "Could not load calls (" + err.message + "); retrying…";
    }
  }

  function schedule() {
    clearTimeout(timer);
    // poll only while the page is visible: a background tab need not hit the index
    if (!document.hidden) timer = setTimeout(async () => { await refresh(); schedule(); }, pollMs);
  }

  newer.addEventListener("click", () => { offset = Math.max(0, offset - limit); refresh(); });
  older.addEventListener("click", () => { offset += limit; refresh(); });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); schedule(); });
  refresh().then(schedule);
})();
