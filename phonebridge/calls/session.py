"""One phone call: the task group that joins a Twilio stream to a model session.

ARCHITECTURE.md, "The shape" and "The life of a call" steps 2-4. A call owns
the Twilio socket, one model session, both transcoding directions, the 20 ms
input clock (:class:`~phonebridge.calls.pacer.InputPacer`) and the call
journal (recording, transcript, call record). Three tasks run per call:

- *phone reader*: Twilio messages -> caller audio -> model (as it arrives);
- *input clock*: wakes when the pacer says, and feeds silence into gaps;
- *model reader*: waits for the model to be ready, then agent audio ->
  8 kHz mu-law -> Twilio ``media`` messages, as soon as produced.

Whoever sees the end first calls :meth:`CallSession.end`; :meth:`run` then
takes the one teardown path every exit shares: model socket closed first
(hosted PersonaPlex bills while it is open), tasks cancelled, Twilio socket
closed when the bridge ended the call (so Twilio asks the ``<Connect action>``
URL what to do next), lease released, journal finalised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from phonebridge.audio.frames import FrameChunker
from phonebridge.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from phonebridge.calls.journal import CallJournal
from phonebridge.calls.outcome import CallEndReason, CallOutcome
from phonebridge.calls.pacer import InputPacer
from phonebridge.calls.pending import PendingCall
from phonebridge.calls.voice_activity import SilenceTimer
from phonebridge.errors import ModelError, RemoteProtocolError
from phonebridge.metrics import BridgeMetrics
from phonebridge.models.base import FRAME_BYTES, AgentAudio, AgentText, ModelSession
from phonebridge.telephony.twilio.events import Dtmf, Mark, Media, Stop
from phonebridge.telephony.twilio.protocol import (
    MediaStreamProtocol,
    mark_message,
    media_message,
)

log = logging.getLogger(__name__)

PHONE_FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law
MARK_EVERY_SECONDS = 1.0  # how often a playback mark is sent to measure Twilio's lag


class PhoneSocket(Protocol):
    """The Twilio side of a call, as the web layer hands it over."""

    async def receive(self) -> str | bytes | None:
        """The next message; ``None`` once the socket is closed.

        Raises :class:`RemoteProtocolError` when the transport refused what the
        peer sent (a frame over the size limit) and closed the socket.
        """

    async def send_text(self, text: str) -> None: ...

    async def close(self, code: int = 1000) -> None: ...


DtmfHook = Callable[[PendingCall, str], tuple[CallEndReason, str] | None]
"""Told of every keypad digit; a reason returned ends the call with it (an outbound
call's opt-out digit: phonebridge/outbound/)."""


class CallSession:
    """Runs one call from the Twilio ``start`` message to the end of everything."""

    def __init__(
        self,
        *,
        pending: PendingCall,
        stream: MediaStreamProtocol,
        phone: PhoneSocket,
        journal: CallJournal,
        clock: Callable[[], float],
        on_outcome: Callable[[CallOutcome], None],
        metrics: BridgeMetrics,
        on_dtmf: DtmfHook | None = None,
    ) -> None:
        self.pending = pending
        self._on_dtmf_hook = on_dtmf
        assert stream.start is not None, "the stream handler reads 'start' first"
        self._stream = stream
        self.stream_sid = stream.start.stream_sid
        self.call_sid = pending.call_sid
        self.persona = pending.persona
        self._phone = phone
        self._journal = journal
        self._clock = clock
        self._on_outcome = on_outcome
        self._metrics = metrics
        # Bound once: a labelled child lookup per frame would cost more than the frame.
        self._inbound_seconds = metrics.frame_processing.labels("inbound")
        self._outbound_seconds = metrics.frame_processing.labels("outbound")
        self._end_requested_at: float | None = None
        self._origin = clock()  # the call's timeline starts at the stream's start
        self._ended = asyncio.Event()
        self._outcome: CallOutcome | None = None
        self._model: ModelSession | None = None
        self._wake_clock = asyncio.Event()
        self._clock_due = 0.0  # when the input clock will wake on its own
        self._pacer = InputPacer(silence=bytes(FRAME_BYTES))
        # Twilio frames are 20 ms, but nothing promises it (§1.2): the model
        # gets exact 20 ms frames, a remainder waiting for the next message.
        self._caller_frames = FrameChunker(FRAME_BYTES)
        self._outbound_mulaw = bytearray()
        self._playback_end = 0  # 8 kHz sample where the audio we queued at Twilio ends
        self._marks: dict[str, float] = {}
        self._unknown_logged = False
        self._mark_counter = 0
        self._next_mark_at = 0.0
        self.playback_lag: float | None = None
        limits = self.persona.limits
        self._silence = SilenceTimer(limits.silence_hangup_seconds)
        self._max_duration = limits.max_call_seconds
        # Stall watchdog: the model reader only counts events (no clock read per
        # page); the once-a-second limit check notices when the count stops moving.
        self._stall_seconds = limits.model_stall_seconds
        self._model_outputs = 0
        self._model_outputs_seen = 0
        self._model_output_moved_at: float | None = None  # None until the model is ready

    # -- timeline ------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the stream started: the call's own timeline."""
        return self._clock() - self._origin

    # -- ending ----------------------------------------------------------------

    def end(self, reason: CallEndReason, detail: str = "") -> None:
        """Ask for the call to end; the first reason wins."""
        if self._outcome is None:
            self._outcome = CallOutcome(self.call_sid, self.persona.id, reason, detail)
            self._end_requested_at = self._clock()
            self._ended.set()

    @property
    def outcome(self) -> CallOutcome | None:
        return self._outcome

    async def run(self) -> CallOutcome:
        """Run the call to its end; always tears everything down."""
        self._journal.event("answered", 0.0, f"stream {self.stream_sid}")
        for at, kind, detail in self.pending.events:
            self._journal.event(kind, 0.0, f"{detail} ({at:+.3f}s before stream)")
        self._metrics.active_calls.inc()
        tasks = [
            asyncio.create_task(self._phone_reader(), name=f"{self.call_sid}:phone"),
            asyncio.create_task(self._model_reader(), name=f"{self.call_sid}:model"),
            asyncio.create_task(self._input_clock(), name=f"{self.call_sid}:clock"),
        ]
        try:
            await self._ended.wait()
        except asyncio.CancelledError:
            self.end(CallEndReason.DRAIN, "call task cancelled")
            raise
        finally:
            try:
                await self._teardown(tasks)
            finally:
                self._metrics.active_calls.dec()
        assert self._outcome is not None
        return self._outcome

    async def _teardown(self, tasks: list[asyncio.Task[None]]) -> None:
        outcome = self._outcome or CallOutcome(
            self.call_sid, self.persona.id, CallEndReason.BRIDGE_ERROR, "ended without reason"
        )
        self._outcome = outcome
        # The model socket first: it is billed by wall-clock while open.
        model = self._model or self.pending.session
        with contextlib.suppress(Exception):
            await model.close()
        closed_at = self._clock()
        if self._end_requested_at is not None:
            self._metrics.hangup_to_model_closed.observe(closed_at - self._end_requested_at)
        self._metrics.model_socket_seconds.labels(model.provider).inc(
            model.timings.socket_seconds(closed_at)
        )
        self._metrics.calls.labels("answered", outcome.reason.value).inc()
        if not self.pending.opening.done():
            self.pending.opening.cancel()
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("call task failed", exc_info=result, extra={"call_sid": self.call_sid})
        self.pending.lease.release()
        # Before the stream closes: Twilio asks the <Connect action> URL at once,
        # and its answer depends on this outcome.
        self._on_outcome(outcome)
        # Closing the stream makes Twilio request the <Connect action> URL when
        # the bridge ended the call; after the caller's `stop` it is a clean
        # close handshake instead of a dropped connection (the soak saw 1006s).
        with contextlib.suppress(Exception):
            await self._phone.close()
        self._journal.event(
            "hangup", self.now(), f"{outcome.reason.value} by {outcome.reason.ended_by}"
        )
        await self._journal.finish(outcome, model.timings, self._clock())

    # -- phone -> model --------------------------------------------------------

    async def _phone_reader(self) -> None:
        try:
            while True:
                raw = await self._phone.receive()
                if raw is None:
                    self.end(CallEndReason.CALLER_DROPPED, "media socket closed without stop")
                    await self._close_model()
                    return
                await self._on_phone_message(raw)
        except RemoteProtocolError as exc:
            # Twilio never sends malformed messages; one that arrives means the
            # stream is corrupt or not Twilio's. End the call (the bridge closes
            # the stream, so Twilio asks the <Connect action> URL) rather than
            # guess, and read no further: the stream's state is unknown.
            log.warning("Twilio protocol error: %s", exc, extra={"call_sid": self.call_sid})
            self.end(CallEndReason.PROTOCOL_ERROR, str(exc))
        except Exception as exc:
            self.end(CallEndReason.BRIDGE_ERROR, f"phone reader: {exc!r}")
            raise

    async def _on_phone_message(self, raw: str | bytes) -> None:
        """One frame from Twilio; raises :class:`RemoteProtocolError` on a bad one."""
        event = self._stream.receive(raw, self._clock())
        match event:
            case Media():
                await self._on_caller_audio(event)
            case Dtmf():
                await self._on_dtmf(event.digit)
            case Mark():
                self._on_mark(event.name)
            case Stop():
                self.end(CallEndReason.CALLER_HANGUP, "stop")
                await self._close_model()
            case None if self._stream.unknown_events == 1 and not self._unknown_logged:
                # Once per call: Twilio may have added an event we do not know yet.
                self._unknown_logged = True
                log.info("skipping unknown Twilio events", extra={"call_sid": self.call_sid})
            case _:
                pass  # None: ignored after stop (a second stop, late media), unknown events

    async def _close_model(self) -> None:
        """Close the model socket from the task that saw the caller go.

        The teardown closes it too (idempotently), but it runs in the call's
        main task, one event-loop turn later, and under load every turn waits
        behind the other calls' frames while the hosted model bills by the
        second: the load bench's hang-up p99 at 50 calls went from 40-76 ms to
        10-31 ms (two runs each, bench/bench_load.py --levels 50).
        """
        with contextlib.suppress(Exception):
            await (self._model or self.pending.session).close()

    async def _on_caller_audio(self, media: Media) -> None:
        started = time.perf_counter()
        pcm8 = ulaw_to_pcm16(media.payload)
        self._journal.caller_audio(pcm8, media.timestamp_ms * 8)
        self._silence.observe(pcm8, self.now())
        now = self._clock()
        frames: list[bytes] = []
        dropped_before = self._pacer.stats.dropped_frames
        for frame in self._caller_frames.push(pcm8):
            frames += self._pacer.push_caller(frame, now)
        if self._pacer.stats.dropped_frames != dropped_before:
            self._metrics.dropped_frames.inc(self._pacer.stats.dropped_frames - dropped_before)
        # The sends are inside the measurement: they hold the model client's
        # encoding (Opus, or fal's resampling), and a socket write is only a
        # buffer append.
        for frame in frames:
            await self._send_to_model(frame)
        self._inbound_seconds.observe(time.perf_counter() - started)
        # Wake the clock only if it now has something to do sooner than it
        # planned (frames queued ahead of real time). A caller frame usually
        # pushes the clock's deadline later, and waking it 50 times a second
        # per call to find nothing to do showed up in the load profile.
        deadline = self._pacer.next_deadline()
        if deadline is not None and deadline < self._clock_due:
            self._wake_clock.set()

    async def _send_to_model(self, frame: bytes) -> None:
        if self._model is not None:
            await self._model.send_audio(frame)

    async def _on_dtmf(self, digit: str) -> None:
        self._journal.dtmf(digit, self.now())
        if self._on_dtmf_hook is not None:
            ending = self._on_dtmf_hook(self.pending, digit)
            if ending is not None:
                self.end(*ending)
                return
        model = self._model
        if model is not None and model.supports_text_injection and self.persona.dtmf_to_model:
            with contextlib.suppress(ModelError):
                await model.inject_text(f"[The caller pressed {digit} on the keypad.]")

    def _on_mark(self, name: str) -> None:
        sent_at = self._marks.pop(name, None)
        if sent_at is not None:
            self.playback_lag = self._clock() - sent_at
            self._metrics.playback_lag.observe(self.playback_lag)

    async def _input_clock(self) -> None:
        """Feeds the model at real time; checks the call's limits once a second."""
        next_limit_check = 0.0
        while True:
            deadline = self._pacer.next_deadline()
            loop_now = self._clock()
            if deadline is None or deadline > loop_now:
                timeout = 0.25 if deadline is None else min(deadline - loop_now, 0.25)
                self._clock_due = loop_now + timeout
                self._wake_clock.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake_clock.wait()
            now = self._clock()
            silence_before = self._pacer.stats.silence_frames
            for frame in self._pacer.tick(now):
                await self._send_to_model(frame)
            filled = self._pacer.stats.silence_frames - silence_before
            if filled:
                self._metrics.silence_frames.inc(filled)
            if now >= next_limit_check:
                next_limit_check = now + 1.0
                self._check_limits()

    def _check_limits(self) -> None:
        now = self.now()
        self._journal.advance_to(int(now * 8000))
        if self._max_duration is not None and now >= self._max_duration:
            self.end(CallEndReason.MAX_DURATION, f"{self._max_duration:g} s limit")
        elif self._silence.expired(now):
            self.end(CallEndReason.CALLER_SILENCE, "caller silent too long")
        elif self._model_stalled(now):
            detail = f"no model output for {self._stall_seconds:g} s"
            log.warning("model stalled: %s", detail, extra={"call_sid": self.call_sid})
            self.end(CallEndReason.MODEL_STALLED, detail)

    def _model_stalled(self, now: float) -> bool:
        """Has the ready model produced nothing for the persona's stall limit?

        PersonaPlex emits one page per 80 ms step for as long as it is fed
        (PROTOCOLS.md §2.3 step 5), and the input clock feeds it without pause,
        so an open socket that stays quiet for seconds is a stuck model: the
        caller would hear dead air until they gave up. Never during
        conditioning: the clock starts when the model is ready. The output is
        seen moving at most once a second, so this fires up to a second late,
        never early.
        """
        moved_at = self._model_output_moved_at
        if moved_at is None:
            return False
        if self._model_outputs != self._model_outputs_seen:
            self._model_outputs_seen = self._model_outputs
            self._model_output_moved_at = now
            return False
        return now - moved_at >= self._stall_seconds

    # -- model -> phone --------------------------------------------------------

    async def _model_reader(self) -> None:
        try:
            model = await self.pending.opening
        except ModelError as exc:
            self.end(CallEndReason.MODEL_FAILED, str(exc))
            return
        except Exception as exc:
            self.end(CallEndReason.MODEL_FAILED, f"unexpected: {exc!r}")
            raise
        self._model = model
        self._journal.model_ready(model.provider, self.now())
        timings = model.timings
        if timings.connect_seconds is not None:
            self._metrics.model_connect.labels(model.provider).observe(timings.connect_seconds)
        if timings.time_to_ready is not None:
            self._metrics.model_ready.labels(model.provider).observe(timings.time_to_ready)
        self._pacer.start(self._clock())
        self._model_output_moved_at = self.now()  # the stall watchdog starts now
        self._wake_clock.set()
        async for event in model.events():
            match event:
                case AgentAudio():
                    self._model_outputs += 1
                    await self._on_agent_audio(event.pcm)
                case AgentText():
                    self._model_outputs += 1
                    self._journal.agent_text(event.text, self._playback_end / 8000)
                case _:
                    self.end(CallEndReason.MODEL_ENDED, f"{event.reason.value}: {event.detail}")
                    return
        self.end(CallEndReason.MODEL_ENDED, "event stream ended")

    async def _on_agent_audio(self, pcm8: bytes) -> None:
        started = time.perf_counter()
        mulaw = pcm16_to_ulaw(pcm8)
        if not mulaw:
            return
        # Twilio plays what we send in order, starting now or when the audio
        # already queued ends: that is where this audio sits on the call's line.
        now_sample = int(self.now() * 8000)
        self._playback_end = max(self._playback_end, now_sample)
        self._journal.agent_audio(pcm8, self._playback_end)
        self._playback_end += len(pcm8) // 2
        self._outbound_mulaw += mulaw
        whole = len(self._outbound_mulaw) - len(self._outbound_mulaw) % PHONE_FRAME_BYTES
        if not whole:
            return
        # All the whole 20 ms frames the model's page decoded to go in ONE
        # media message (80 ms from PersonaPlex). Twilio takes a payload of any
        # size and plays it in order (PROTOCOLS.md §1.3), and four messages
        # sent in the same instant would reach the caller no sooner: this is
        # the same audio at the same time for a quarter of the JSON, base64,
        # WebSocket frames and socket writes.
        message = media_message(self.stream_sid, bytes(self._outbound_mulaw[:whole]))
        del self._outbound_mulaw[:whole]
        # Per 20 ms phone frame, like the inbound figure.
        self._outbound_seconds.observe((time.perf_counter() - started) * PHONE_FRAME_BYTES / whole)
        await self._phone.send_text(message)
        await self._maybe_mark()

    async def _maybe_mark(self) -> None:
        now = self._clock()
        if now < self._next_mark_at:
            return
        self._next_mark_at = now + MARK_EVERY_SECONDS
        self._mark_counter += 1
        name = f"pb{self._mark_counter}"
        self._marks[name] = now
        if len(self._marks) > 64:  # Twilio echoes every mark; bound it anyway
            self._marks.pop(next(iter(self._marks)))
        await self._phone.send_text(mark_message(self.stream_sid, name))
