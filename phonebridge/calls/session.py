"""One call: the task group that joins a leg (calls/leg.py) to a model session.

ARCHITECTURE.md, "The shape" and "The life of a call" steps 2-4. A call owns
its leg (the caller's side: a Twilio stream, a browser, a carrier), one model
session, the 20 ms input clock (:class:`~phonebridge.calls.pacer.InputPacer`)
and the call journal (recording, transcript, call record). Everything runs at
the leg's rate (:attr:`Leg.sample_rate`): the model session was opened for it,
and the recording and transcript count its samples. Three tasks run per call:

- *leg reader*: leg events -> caller audio -> model (as it arrives);
- *input clock*: wakes when the pacer says, and feeds silence into gaps;
- *model reader*: waits for the model to be ready, then agent audio -> the
  leg, as soon as produced.

A :class:`~phonebridge.calls.policy.CallPolicy` (optional, per call) sees the
caller's keys, the agent's text and the clock, and may end the call with a
hand-off, hold the caller or resume (calls/policy.py): features such as
transfer to a human live there, not here.

Whoever sees the end first calls :meth:`CallSession.end`; :meth:`run` then
takes the one teardown path every exit shares: model socket closed first
(hosted PersonaPlex bills while it is open), tasks cancelled, the leg closed
(a Twilio stream closed by the bridge makes Twilio ask the ``<Connect
action>`` URL what to do next), lease released, journal finalised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from phonebridge.audio.frames import FrameChunker
from phonebridge.calls.journal import CallJournal
from phonebridge.calls.leg import CallerAudio, KeyPress, Leg, LegEnded, PlaybackMark
from phonebridge.calls.listen import ListenHub
from phonebridge.calls.outcome import CallEndReason, CallOutcome, Handoff
from phonebridge.calls.pacer import InputPacer
from phonebridge.calls.pending import PendingCall
from phonebridge.calls.policy import CallPolicy, TransferFacts
from phonebridge.calls.voice_activity import SilenceTimer
from phonebridge.errors import LocalProtocolError, ModelError
from phonebridge.metrics import BridgeMetrics
from phonebridge.models.base import AgentAudio, AgentText, ModelSession, frame_bytes

log = logging.getLogger(__name__)

MARK_EVERY_SECONDS = 1.0  # how often a playback mark is sent to measure the leg's lag
HOLD_CHUNK_SECONDS = 0.1  # hold audio goes to the leg in pieces this long...
HOLD_AHEAD_SECONDS = 0.3  # ...keeping this much queued there (no gaps, quick to clear)


"""Told of every keypad digit; a reason returned ends the call with it (an outbound
call's opt-out digit: phonebridge/outbound/)."""


class CallSession:
    """Runs one call from the leg's start to the end of everything."""

    def __init__(
        self,
        *,
        pending: PendingCall,
        leg: Leg,
        journal: CallJournal,
        clock: Callable[[], float],
        on_outcome: Callable[[CallOutcome], None],
        metrics: BridgeMetrics,
        policy: CallPolicy | None = None,
    ) -> None:
        self.pending = pending
        self.leg = leg
        self.stream_sid = leg.stream_id
        self.call_sid = pending.call_sid
        self.persona = pending.persona
        self.sample_rate = rate = leg.sample_rate
        requested = pending.sample_rate
        if requested != rate:
            # The model session was opened for the leg's rate before the leg
            # existed (the webhook); a mismatch would be noise, not speech.
            raise LocalProtocolError(
                f"a {rate} Hz leg joined a model session opened at {requested}"
            )
        self._frame_bytes = frame_bytes(rate)
        self.listeners = ListenHub(rate)
        """Operators listening in (calls/listen.py): a bounded fan-out, never a wait."""
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
        self._pacer = InputPacer(silence=bytes(self._frame_bytes))
        # Legs deliver audio in their own sizes (Twilio's 20 ms is observed, not
        # promised: §1.2; Exotel sends 100 ms): the model gets exact 20 ms
        # frames, a remainder waiting for the next message.
        self._caller_frames = FrameChunker(self._frame_bytes)
        self._playback_end = 0  # leg-rate sample where the audio queued at the leg ends
        self._marks: dict[str, float] = {}
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
        self._policy = policy
        self._hold_loop: bytes | None = None  # playing instead of the agent (calls/policy.py)
        self._hold_task: asyncio.Task[None] | None = None

    # -- timeline ------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the leg started: the call's own timeline."""
        return self._clock() - self._origin

    # -- ending ----------------------------------------------------------------

    def end(self, reason: CallEndReason, detail: str = "", handoff: Handoff | None = None) -> None:
        """Ask for the call to end; the first reason wins. ``handoff``: where the caller goes."""
        if self._outcome is None:
            self._outcome = CallOutcome(self.call_sid, self.persona.id, reason, detail, handoff)
            self._end_requested_at = self._clock()
            self._ended.set()

    def note(self, kind: str, detail: str) -> None:
        """Put an event on the call's transcript now (an operator started listening...)."""
        self._journal.event(kind, self.now(), detail)

    @property
    def outcome(self) -> CallOutcome | None:
        return self._outcome

    # -- controls a policy uses (calls/policy.py CallControls) -----------------

    def hold(self, loop: bytes) -> None:
        """Mute the agent; play ``loop`` to the caller until :meth:`resume` or the end."""
        if not loop or self._hold_loop is not None or self._outcome is not None:
            return
        self._hold_loop = loop
        self._hold_task = asyncio.create_task(self._play_hold(loop), name=f"{self.call_sid}:hold")

    def resume(self) -> None:
        """The caller hears the agent again (the hold player clears what it queued)."""
        self._hold_loop = None
        self._silence.restart(self.now())

    async def tell_model(self, text: str) -> bool:
        model = self._model
        if model is None or not model.supports_text_injection:
            return False
        try:
            await model.inject_text(text)
        except ModelError:
            return False
        return True

    def record_transfer(self, facts: TransferFacts) -> None:
        self._journal.transfer(facts)

    async def run(self) -> CallOutcome:
        """Run the call to its end; always tears everything down."""
        self._journal.event("answered", 0.0, f"stream {self.stream_sid}")
        for at, kind, detail in self.pending.events:
            self._journal.event(kind, 0.0, detail, pre_stream=round(at, 3))
        self._metrics.active_calls.inc()
        if self._policy is not None:
            self._policy.start(self)
        tasks = [
            asyncio.create_task(self._leg_reader(), name=f"{self.call_sid}:leg"),
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
        if self._hold_task is not None:
            tasks.append(self._hold_task)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("call task failed", exc_info=result, extra={"call_sid": self.call_sid})
        self.pending.lease.release()
        self.listeners.close()
        if self._policy is not None:
            try:
                await self._policy.close(outcome)
            except Exception:
                log.exception("call policy failed to close", extra={"call_sid": self.call_sid})
        # Before the leg closes: a Twilio stream's close makes Twilio ask the
        # <Connect action> URL at once, and its answer depends on this outcome.
        self._on_outcome(outcome)
        with contextlib.suppress(Exception):
            await self.leg.close()
        self._journal.event(
            "hangup", self.now(), f"{outcome.reason.value} by {outcome.reason.ended_by}"
        )
        await self._journal.finish(outcome, model.timings, self._clock())

    # -- leg -> model ------------------------------------------------------------

    async def _leg_reader(self) -> None:
        try:
            while True:
                event = await self.leg.receive()
                match event:
                    case CallerAudio():
                        await self._on_caller_audio(event)
                    case KeyPress():
                        await self._on_dtmf(event.digit)
                    case PlaybackMark():
                        self._on_mark(event.name)
                    case LegEnded():
                        self.end(event.reason, event.detail)
                        if event.reason.ended_by == "caller":
                            await self._close_model()
                        return
                    case None:
                        pass
        except Exception as exc:
            self.end(CallEndReason.BRIDGE_ERROR, f"leg reader: {exc!r}")
            raise

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

    async def _on_caller_audio(self, audio: CallerAudio) -> None:
        started = time.perf_counter()
        pcm = audio.pcm
        self._journal.caller_audio(pcm, audio.at_sample)
        self._silence.observe(pcm, self.now())
        if self.listeners:
            self.listeners.caller(pcm)
        now = self._clock()
        frames: list[bytes] = []
        dropped_before = self._pacer.stats.dropped_frames
        for frame in self._caller_frames.push(pcm):
            frames += self._pacer.push_caller(frame, now)
        if self._pacer.stats.dropped_frames != dropped_before:
            self._metrics.dropped_frames.inc(self._pacer.stats.dropped_frames - dropped_before)
        # The sends are inside the measurement: they hold the model client's
        # encoding (Opus, or fal's resampling), and a socket write is only a
        # buffer append.
        for frame in frames:
            await self._send_to_model(frame)
        # Per 20 ms frame, whatever size the leg delivers (Exotel: 100 ms).
        elapsed = time.perf_counter() - started
        self._inbound_seconds.observe(elapsed * self._frame_bytes / max(len(pcm), 1))
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
        now = self.now()
        self._journal.dtmf(digit, now)
        if self._policy is not None and await self._policy.key(digit, now):
            return  # a policy took it: an opt-out, the keypad map (calls/policy.py)
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
            policy = self._policy
            if policy is not None:
                due = policy.next_deadline()
                if due is not None and now - self._origin >= due:
                    policy.poll(now - self._origin)
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
        self._journal.advance_to(int(now * self.sample_rate))
        if self._max_duration is not None and now >= self._max_duration:
            self.end(CallEndReason.MAX_DURATION, f"{self._max_duration:g} s limit")
        elif self._silence.expired(now) and self._hold_loop is None:
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
                    self._journal.agent_text(event.text, self._playback_end / self.sample_rate)
                    if self._policy is not None:
                        self._policy.agent_text(event.text, self.now())
                    with contextlib.suppress(Exception):
                        await self.leg.show_text(event.text)
                case _:
                    self.end(CallEndReason.MODEL_ENDED, f"{event.reason.value}: {event.detail}")
                    return
        self.end(CallEndReason.MODEL_ENDED, "event stream ended")

    async def _on_agent_audio(self, pcm: bytes) -> None:
        if not pcm or self._hold_loop is not None:
            return  # on hold the caller hears the hold loop, not the agent
        started = time.perf_counter()
        # A leg plays what we send in order, starting now or when the audio
        # already queued ends: that is where this audio sits on the call's line.
        now_sample = int(self.now() * self.sample_rate)
        self._playback_end = max(self._playback_end, now_sample)
        self._journal.agent_audio(pcm, self._playback_end)
        if self.listeners:
            self.listeners.agent(pcm)
        self._playback_end += len(pcm) // 2
        await self.leg.play(pcm)
        # Per 20 ms frame, like the inbound figure (the leg's send is a buffer append).
        elapsed = time.perf_counter() - started
        self._outbound_seconds.observe(elapsed * self._frame_bytes / len(pcm))
        await self._maybe_mark()

    async def _maybe_mark(self) -> None:
        if not self.leg.supports_marks:
            return
        now = self._clock()
        if now < self._next_mark_at:
            return
        self._next_mark_at = now + MARK_EVERY_SECONDS
        self._mark_counter += 1
        name = f"pb{self._mark_counter}"
        self._marks[name] = now
        if len(self._marks) > 64:  # legs echo every mark; bound it anyway
            self._marks.pop(next(iter(self._marks)))
        await self.leg.mark(name)

    # -- hold --------------------------------------------------------------------

    async def _play_hold(self, loop: bytes) -> None:
        """Play ``loop`` in turn, a little ahead of real time, until :meth:`resume`.

        Pieces of :data:`HOLD_CHUNK_SECONDS` keep at most
        :data:`HOLD_AHEAD_SECONDS` queued at the leg, so resuming (a ``clear``)
        drops little and the agent is heard again at once.
        """
        chunk = int(self.sample_rate * HOLD_CHUNK_SECONDS) * 2
        position = 0
        await self.leg.clear()  # the agent's queued words stop now
        queued_until = self._clock()
        while self._hold_loop is loop:
            now = self._clock()
            queued_until = max(queued_until, now)
            while queued_until < now + HOLD_AHEAD_SECONDS:
                piece = loop[position : position + chunk]
                if len(piece) < chunk:
                    piece += loop[: chunk - len(piece)]
                position = (position + chunk) % len(loop)
                at_sample = max(self._playback_end, int(self.now() * self.sample_rate))
                self._journal.agent_audio(piece, at_sample)
                self._playback_end = at_sample + len(piece) // 2
                await self.leg.play(piece)
                queued_until += HOLD_CHUNK_SECONDS
            await asyncio.sleep(HOLD_CHUNK_SECONDS)
        await self.leg.clear()
