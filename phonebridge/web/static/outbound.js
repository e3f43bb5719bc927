// The outbound page: "Call a number" (POST /api/calls as JSON) and campaign
// progress (polls /api/campaigns). No framework; everything from this server.
"use strict";

function variablesOf(text) {
  const out = {};
  for (const part of text.split(",")) {
    const [name, ...rest] = part.split("=");
    if (name.trim()) out[name.trim()] = rest.join("=").trim();
  }
  return out;
}

document.getElementById("call-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const result = document.getElementById("call-result");
  const body = {
    to: form.get("to"),
    persona: form.get("persona"),
    variables: variablesOf(String(form.get("variables") || "")),
  };
  if (form.get("from")) body.from = form.get("from");
  const response = await fetch("/api/calls", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await response.json();
  result.textContent = response.ok
    ? `Calling ${data.to_number} (${data.call_sid || data.id})`
    : `Not called: ${data.error || response.status}`;
});

async function control(id, action) {
  await fetch(`/api/campaigns/${id}/${action}`, { method: "POST" });
  refresh();
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

async function refresh() {
  const response = await fetch("/api/campaigns");
  if (!response.ok) return;
  const body = document.querySelector("#campaigns tbody");
  body.replaceChildren();
  for (const c of (await response.json()).items) {
    const p = c.progress;
    const row = document.createElement("tr");
    row.dataset.id = c.id;
    cell(row, c.name);
    cell(row, c.persona);
    cell(row, c.state);
    cell(row, p.contacts);
    cell(row, (p.states.done || 0) + (p.states.skipped || 0));
    cell(row, p.states.queued || 0);
    cell(row, p.states.dialing || 0);
    cell(row, p.attempts);
    cell(row, Object.entries(p.outcomes).map(([k, v]) => `${k}: ${v}`).join(", "));
    const actions = cell(row, "");
    for (const action of ["pause", "resume", "cancel"]) {
      const button = document.createElement("button");
      button.textContent = action;
      button.addEventListener("click", () => control(c.id, action));
      actions.appendChild(button);
    }
    body.appendChild(row);
  }
}

refresh();
setInterval(refresh, 3000);
