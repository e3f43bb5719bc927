// AudioWorklet processors for the Talk and Listen pages (run on the audio thread).
//
// "capture": the microphone as 20 ms frames of s16le PCM at the context's rate,
// posted to the page, which sends each as one WebSocket binary message.
//
// "playback": a small jitter buffer. Model audio arrives in 80 ms pages; playback
// starts once PREBUFFER_S is queued (enough to ride out the usual jitter between
// pages) and the queue is capped at MAX_BUFFER_S: anything older is dropped, so
// the delay the buffer adds stays under ~100 ms and the caller can barge in on
// audio that is nearly live. An underrun plays silence and re-buffers. Marks are
// positions in the queue, reported back when the audio before them has played
// (or was cleared), like a carrier's mark echo.
"use strict";

const PREBUFFER_S = 0.04;
const MAX_BUFFER_S = 0.12;

class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.size = Math.round(sampleRate / 50);
    this.frame = new Int16Array(this.size);
    this.n = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        const s = Math.max(-1, Math.min(1, channel[i]));
        this.frame[this.n++] = s < 0 ? s * 32768 : s * 32767;
        if (this.n === this.size) {
          this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
          this.frame = new Int16Array(this.size);
          this.n = 0;
        }
      }
    }
    return true;
  }
}

class Playback extends AudioWorkletProcessor {
  constructor() {
    super();
    this.chunks = [];
    this.offset = 0; // samples of chunks[0] already played
    this.buffered = 0; // samples queued and not yet played
    this.queued = 0; // samples ever queued (the marks' clock)
    this.played = 0; // samples ever played or dropped
    this.dropped = 0;
    this.playing = false;
    this.prebuffer = Math.round(sampleRate * PREBUFFER_S);
    this.max = Math.round(sampleRate * MAX_BUFFER_S);
    this.marks = [];
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  onMessage(message) {
    if (message.pcm) {
      const pcm = new Int16Array(message.pcm);
      const samples = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
      this.chunks.push(samples);
      this.buffered += samples.length;
      this.queued += samples.length;
      while (this.buffered > this.max && this.chunks.length > 1) this.dropOldest();
    } else if (message.mark !== undefined) {
      this.marks.push({ name: message.mark, at: this.queued });
    } else if (message.clear) {
      this.played += this.buffered;
      this.chunks = [];
      this.offset = 0;
      this.buffered = 0;
      this.playing = false;
    }
  }

  dropOldest() {
    const rest = this.chunks[0].length - this.offset;
    this.chunks.shift();
    this.offset = 0;
    this.buffered -= rest;
    this.played += rest;
    this.dropped += rest;
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && this.buffered >= this.prebuffer) this.playing = true;
    let i = 0;
    if (this.playing) {
      while (i < out.length && this.chunks.length) {
        const chunk = this.chunks[0];
        const n = Math.min(out.length - i, chunk.length - this.offset);
        out.set(chunk.subarray(this.offset, this.offset + n), i);
        i += n;
        this.offset += n;
        this.buffered -= n;
        this.played += n;
        if (this.offset === chunk.length) {
          this.chunks.shift();
          this.offset = 0;
        }
      }
      if (!this.chunks.length) this.playing = false; // underrun: buffer again
    }
    out.fill(0, i);
    while (this.marks.length && this.marks[0].at <= this.played) {
      this.port.postMessage({ mark: this.marks.shift().name });
    }
    return true;
  }
}

registerProcessor("capture", Capture);
registerProcessor("playback", Playback);
