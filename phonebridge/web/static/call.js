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

  async function loadTranscript(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const data = await response.json();
    const rows = [];
    for (const u of data.utterances || []) rows.push([u.start, u.speaker, u.text, "text"]);
    for (const e of data.events || []) rows.push([e.at, "event", e.kind + (e.detail ? " " + e.detail : ""), "event"]);
    rows.sort((a, b) => a[0] - b[0]);
    list.replaceChildren(...rows.map((r) => line(...r)));
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
