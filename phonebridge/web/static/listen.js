// Listen in on a live call: both sides, mixed or split (caller left, agent right).
"use strict";
(function () {
  const section = document.getElementById("listen");
  const callSid = section.dataset.callSid;
  const form = document.getElementById("listen-form");
  const mode = document.getElementById("mode");
  const stopButton = document.getElementById("stop");
  const status = document.getElementById("status");
  let session = null;
  window.listen = { get session() { return session; } };

  async function start() {
    const response = await fetch("/api/calls/" + encodeURIComponent(callSid) + "/listen", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: "{}",
    });
    if (!response.ok) { status.textContent = "Cannot listen: HTTP " + response.status; return; }
    const ticket = await response.json();
    const ctx = new AudioContext({ sampleRate: ticket.sample_rate });
    await ctx.audioWorklet.addModule("/static/talk-worklet.js");
    const analyser = ctx.createAnalyser();
    analyser.connect(ctx.destination);
    const sides = [0, 1].map((side) => {
      const node = new AudioWorkletNode(ctx, "playback", {
        numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1],
      });
      const pan = ctx.createStereoPanner();
      pan.pan.value = mode.value === "split" ? (side === 0 ? -1 : 1) : 0;
      node.connect(pan).connect(analyser);
      return node;
    });
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + ticket.socket_path);
    ws.binaryType = "arraybuffer";
    session = { ctx, ws, analyser, bytes: [0, 0], ended: null };
    stopButton.disabled = false;
    ws.onmessage = (event) => {
      if (typeof event.data === "string") { status.textContent = "Listening…"; return; }
      const data = new Uint8Array(event.data);
      const side = data[0];
      const pcm = event.data.slice(1);
      session.bytes[side] += pcm.byteLength;
      sides[side].port.postMessage({ pcm }, [pcm]);
    };
    ws.onclose = () => {
      session.ended = true;
      stopButton.disabled = true;
      status.textContent = "The call ended (or listening stopped).";
      ctx.close();
    };
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    start().catch((err) => { status.textContent = "Cannot listen: " + err.message; });
  });
  stopButton.addEventListener("click", () => session && session.ws.close(1000));
})();
