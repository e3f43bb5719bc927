// The Talk page: a browser softphone. Microphone (echo cancellation on) -> 24 kHz
// PCM over an authenticated WebSocket -> the bridge -> the model; the model's
// 24 kHz audio back through a small jitter buffer (talk-worklet.js).
"use strict";
(function () {
  const section = document.getElementById("talk");
  const personas = JSON.parse(section.dataset.personas);
  const form = document.getElementById("talk-form");
  const personaSelect = document.getElementById("persona");
  const callButton = document.getElementById("call");
  const hangupButton = document.getElementById("hangup");
  const override = document.getElementById("override");
  const voiceSelect = document.getElementById("voice");
  const promptArea = document.getElementById("prompt");
  const status = document.getElementById("status");
  const agentText = document.getElementById("agent-text");
  let call = null;

  // Exposed for tests and curious operators: the live call's parts.
  window.talk = { get call() { return call; } };

  function fillOverride() {
    const persona = personas.find((p) => p.id === personaSelect.value);
    if (!persona) return;
    promptArea.value = persona.prompt;
    voiceSelect.value = persona.voice;
  }
  personaSelect.addEventListener("change", fillOverride);
  const wanted = new URLSearchParams(location.search).get("persona");
  if (wanted && personas.some((p) => p.id === wanted)) personaSelect.value = wanted;
  fillOverride();

  function say(text) { status.textContent = text; }

  async function start() {
    const body = { persona: personaSelect.value };
    if (override.checked) {
      body.prompt = promptArea.value;
      body.voice = voiceSelect.value;
    }
    callButton.disabled = true;
    say("Getting a ticket…");
    const response = await fetch("/api/talk/tickets", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      const detail = await response.json().catch(() => ({}));
      say("Cannot call: " + (detail.detail || response.status));
      callButton.disabled = false;
      return;
    }
    const ticket = await response.json();
    const ctx = new AudioContext({ sampleRate: ticket.sample_rate, latencyHint: "interactive" });
    await ctx.audioWorklet.addModule("/static/talk-worklet.js");
    // Echo cancellation is what matters: the model must not hear itself. Noise
    // suppression and AGC are off: they pump and smear what the model hears.
    const mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
    });
    const source = ctx.createMediaStreamSource(mic);
    const capture = new AudioWorkletNode(ctx, "capture", { numberOfInputs: 1, numberOfOutputs: 0 });
    source.connect(capture);
    const playback = new AudioWorkletNode(ctx, "playback", {
      numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1],
    });
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 2048;
    playback.connect(analyser);
    analyser.connect(ctx.destination);
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + ticket.socket_path);
    ws.binaryType = "arraybuffer";
    call = { ctx, mic, ws, analyser, capture, playback, callSid: null, sentFrames: 0, agentBytes: 0, ended: null };
    agentText.textContent = "";

    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "start", sampleRate: ctx.sampleRate }));
      say("Connecting to " + personaSelect.value + "…");
      hangupButton.disabled = false;
      capture.port.onmessage = (event) => {
        if (ws.readyState === WebSocket.OPEN) {
          ws.send(event.data);
          call.sentFrames++;
        }
      };
    };
    playback.port.onmessage = (event) => {
      if (event.data.mark !== undefined && ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify({ type: "mark", name: event.data.mark }));
      }
    };
    ws.onmessage = (event) => {
      if (typeof event.data !== "string") {
        call.agentBytes += event.data.byteLength;
        playback.port.postMessage({ pcm: event.data }, [event.data]);
        return;
      }
      const message = JSON.parse(event.data);
      if (message.type === "text") agentText.textContent += message.text;
      else if (message.type === "mark") playback.port.postMessage({ mark: message.name });
      else if (message.type === "clear") playback.port.postMessage({ clear: true });
      else if (message.type === "call") { call.callSid = message.callSid; say("In call " + message.callSid); }
      else if (message.type === "refused") say("Refused: " + message.reason + " (" + message.detail + ")");
    };
    ws.onclose = (event) => finish(event.code + (event.reason ? " " + event.reason : ""));
  }

  function finish(why) {
    if (!call || call.ended) return;
    call.ended = why;
    call.mic.getTracks().forEach((track) => track.stop());
    call.ctx.close();
    hangupButton.disabled = true;
    callButton.disabled = false;
    if (!status.textContent.startsWith("Refused")) say("Call ended (" + why + ").");
  }

  function hangup() {
    if (!call) return;
    // Tell the bridge first: it closes the model socket at once.
    if (call.ws.readyState === WebSocket.OPEN) call.ws.send(JSON.stringify({ type: "hangup" }));
    call.ws.close(1000, "hang up");
    finish("hung up");
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    start().catch((err) => { say("Cannot call: " + err.message); callButton.disabled = false; });
  });
  hangupButton.addEventListener("click", hangup);
})();
