// One call: draw both channels' waveforms, render the transcript, seek the player.
"use strict";
(function () {
  const section = document.getElementById("player");
  const audio = document.getElementById("audio");
  const canvas = document.getElementById("waveform");
  const list = document.getElementById("transcript");
  let wave = null;

  function stamp(t) {
    const m = Math.floor(t / 60);
    return m + ":" + (t % 60).toFixed(1).padStart(4, "0");
  }

  function seek(t) {
    if (!audio) return;
    audio.currentTime = t;
    if (audio.paused) audio.play().catch(() => {}); // autoplay may be refused: seeking still worked
  }

  function draw() {
    if (!canvas || !wave) return;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, width, height);
    const lanes = [[wave.caller, "#1f6feb"], [wave.agent, "#d9480f"]];
    const lane = height / 2;
    lanes.forEach(([peaks, color], i) => {
      const mid = lane * i + lane / 2;
      ctx.fillStyle = color;
      const n = peaks.min.length;
      for (let x = 0; x < width; x++) {
        const k = Math.min(n - 1, Math.floor((x / width) * n));
        if (k < 0) break;
        const top = mid - peaks.max[k] * (lane / 2 - 2);
        const bottom = mid - peaks.min[k] * (lane / 2 - 2);
        ctx.fillRect(x, top, 1, Math.max(1, bottom - top));
      }
    });
    if (audio && wave.duration_seconds > 0) {
      const x = (audio.currentTime / wave.duration_seconds) * width;
      ctx.fillStyle = "#1d232b";
      ctx.fillRect(Math.round(x), 0, Math.max(1, ratio), height);
    }
  }

  function line(at, who, text, cls) {
    const li = document.createElement("li");
    li.dataset.t = String(at);
    const button = document.createElement("button");
    button.type = "button";
    button.className = "at";
    button.dataset.t = String(at);
    button.textContent = stamp(at);
    button.title = "play from " + stamp(at);
    button.addEventListener("click", () => seek(at));
    const label = document.createElement("span");
    label.className = "who " + who;
    label.textContent = who;
    const words = document.createElement("span");
    words.className = cls;
    words.textContent = text;
    li.append(button, label, words);
    return li;
  }

  // -- call events as sentences ------------------------------------------------
  const ENDINGS = {
    caller_hangup: "the caller hung up",
    caller_dropped: "the caller's line dropped",
    model_failed: "the model could not be opened",
    model_ended: "the model ended the session",
    model_stalled: "the model stopped answering",
    max_duration: "the call reached its length limit",
    caller_silence: "the caller was silent too long",
    drain: "the bridge was shutting down",
    protocol_error: "the phone stream broke the protocol",
    bridge_error: "an error in the bridge",
    crashed: "the bridge process died",
    transferred: "the caller was handed to a human",
    transfer_failed: "no human took the transfer (fallback played)",
    opted_out: "the caller opted out",
  };
  const TRANSFER_EVENTS = {
    transfer_trigger: "Transfer trigger fired",
    transfer_ringing: "Ringing the human",
    transfer_answered: "The human answered; whispering the summary",
    transfer_accepted: "The human accepted",
    transfer_declined: "The human declined",
    transfer_unanswered: "The human did not answer",
    transfer_abandoned: "The caller left before the human accepted",
    transfer_failed: "The human's call could not be placed",
    transfer_returned: "Back to the persona",
    transfer_ignored: "Transfer trigger ignored",
  };
  const secs = (v) => Number(v).toFixed(v < 10 ? 2 : 1) + " s";
  const short = (sid) => (sid.length > 12 ? sid.slice(0, 10) + "…" : sid);

  function parseFacts(events) {
    const last = events.filter((e) => e.kind === "call").pop();
    if (!last) return {};
    try { return JSON.parse(last.detail) || {}; } catch (err) { return {}; }
  }

  // One event as a sentence; anything unknown keeps its kind and detail, never dropped.
  function describe(e, facts) {
    const d = e.detail || "";
    let m;
    switch (e.kind) {
      case "answered":
        m = /^stream (\S+)/.exec(d);
        return m ? "Call answered (stream " + short(m[1]) + ")" : "Call answered";
      case "model_ready":
        return "Model ready on " + (d || "the model") +
          (typeof facts.model_open_seconds === "number" ? " (took " + secs(facts.model_open_seconds) + ")" : "");
      case "overflow":
        m = /^to (\S+)/.exec(d);
        if (!m) return "Overflow " + d;
        return "Overflow to " + m[1] + (typeof e.pre_stream === "number" && e.pre_stream > 0
          ? " (" + secs(e.pre_stream) + " after the webhook)" : "");
      case "dtmf":
        return "Caller pressed " + d;
      case "hangup": {
        m = /^(\w+) by (\w+)$/.exec(d);
        if (!m) return "Hang-up: " + d;
        return "Hang-up: " + (ENDINGS[m[1]] || m[1].replace(/_/g, " ")) + " (" + m[1] + ", by " + m[2] + ")";
      }
      case "recording_failed":
        return "Recording stopped: " + d;
      case "transfer_trigger": case "transfer_ringing": case "transfer_answered":
      case "transfer_accepted": case "transfer_declined": case "transfer_unanswered":
      case "transfer_abandoned": case "transfer_failed": case "transfer_returned":
      case "transfer_ignored":
        return TRANSFER_EVENTS[e.kind] + (d ? ": " + d : "");
      case "call": {
        const parts = ["Call record: " + (facts.end_reason || "ended") + (facts.ended_by ? " by " + facts.ended_by : "")];
        if (typeof facts.model_socket_seconds === "number") parts.push("model socket open " + secs(facts.model_socket_seconds));
        if (typeof facts.first_agent_audio_seconds === "number") parts.push("first agent audio after " + secs(facts.first_agent_audio_seconds));
        if (facts.transfer && facts.transfer.to) {
          parts.push(facts.transfer.mode + " transfer to " + facts.transfer.to + ": " + facts.transfer.result);
        }
        if (Array.isArray(facts.errors) && facts.errors.length) parts.push("errors: " + facts.errors.join("; "));
        return parts.join(" · ");
      }
      default:
        return e.kind.replace(/_/g, " ") + (d ? ": " + d : "");
    }
  }

  async function loadTranscript(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const data = await response.json();
    const events = data.events || [];
    const facts = parseFacts(events);
    const rows = [];
    // utterances and events interleaved by time; at the same instant an event comes first
    for (const u of data.utterances || []) rows.push([u.start, 1, u.speaker, u.text, "text", null]);
    for (const e of events) rows.push([e.at, 0, "call", describe(e, facts), "event fact", e.kind]);
    rows.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    list.replaceChildren(...rows.map((r) => {
      const li = line(r[0], r[2], r[3], r[4]);
      if (r[5]) li.dataset.event = r[5];
      return li;
    }));
    if (!rows.length) list.innerHTML = '<li class="note">Nothing was said.</li>';
  }

  function highlight() {
    let current = null;
    for (const li of list.children) {
      if (li.dataset.t !== undefined && Number(li.dataset.t) <= audio.currentTime + 0.05) current = li;
      li.classList.remove("current");
    }
    if (current) current.classList.add("current");
  }

  if (section.dataset.transcriptUrl) {
    loadTranscript(section.dataset.transcriptUrl).catch((err) => {
      list.innerHTML = "";
      const li = document.createElement("li");
      li.className = "note";
      li.textContent = "Transcript unavailable (" + err.message + ")";
      list.append(li);
    });
  }
  if (canvas && section.dataset.waveformUrl) {
    fetch(section.dataset.waveformUrl, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
      .then((data) => { wave = data; canvas.dataset.drawn = "1"; draw(); })
      .catch(() => { canvas.dataset.drawn = "error"; });
    canvas.addEventListener("click", (event) => {
      if (!wave) return;
      const box = canvas.getBoundingClientRect();
      seek(((event.clientX - box.left) / box.width) * wave.duration_seconds);
    });
    window.addEventListener("resize", draw);
  }
  if (audio) {
    audio.addEventListener("timeupdate", () => { draw(); highlight(); });
    audio.addEventListener("seeked", () => { draw(); highlight(); });
  }
})();
