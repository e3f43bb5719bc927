"""The bridge service: Twilio's three requests, and the calls they create.

- ``POST /twilio/voice`` (:meth:`Bridge.voice_webhook`): pick the persona by
  the dialled number, take a lease, *start opening the model session now*,
  answer ``<Connect><Stream>`` (PROTOCOLS.md §1.1) with a one-time token.
- ``WS /twilio/media`` (:meth:`Bridge.media_stream`): read ``connected`` and
  ``start``, claim the pending call with the token, run the
  :class:`~phonebridge.calls.session.CallSession`.
- ``POST /twilio/stream-ended`` (:meth:`Bridge.stream_ended`): Twilio asks
  what to do after the stream closed; answer the persona's fallback when the
  call ended badly, else hang up.

Signatures are checked by the web layer before these are called; this module
holds the call logic only, so tests can drive it without HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from phonebridge.calls.admission import Admission, Lease
from phonebridge.calls.guard import (
    AnsweredCalls,
    Refused,
    TollFraudGuard,
    caller_key,
    mask_number,
)
from phonebridge.calls.journal import JournalFactory, UnansweredCall
from phonebridge.calls.outcome import CallEndReason, CallOutcome, OutcomeBook
from phonebridge.calls.pending import PendingCall, PendingCalls, new_token
from phonebridge.calls.personal import ClosedAnswer, IncomingCall, PersonalCalls
from phonebridge.calls.ready_answer import answer_when_ready
from phonebridge.calls.session import CallSession, PhoneSocket
from phonebridge.errors import (
    CapacityError,
    HandshakeTimeout,
    ModelBusy,
    ModelError,
    RemoteProtocolError,
)
from phonebridge.metrics import BridgeMetrics
from phonebridge.models.base import ModelSession, ModelSessionFactory
from phonebridge.personas.book import PersonaBook
from phonebridge.personas.schema import Persona
from phonebridge.telephony.twilio import twiml
from phonebridge.telephony.twilio.events import Start
from phonebridge.telephony.twilio.protocol import MediaStreamProtocol

log = logging.getLogger(__name__)

NOT_IN_SERVICE = "The number you have dialled is not in service. Goodbye."
GOODBYE = "Thank you for calling. Goodbye."
# How long the action request waits for a live call's teardown to record its outcome;
# teardown closes one socket and writes a row, well under a second.
OUTCOME_WAIT_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """What the call logic needs from the settings."""

    stream_url: str  # wss://public-host/twilio/media, exactly as written in the TwiML
    action_url: str  # https://public-host/twilio/stream-ended
    pending_timeout: float = 15.0  # how long a webhook's reservation waits for its stream
    start_timeout: float = 10.0  # how long an accepted socket may take to send `start`


@dataclass(frozen=True, slots=True)
class WebhookCall:
    """The voice webhook's form fields that matter (§1.1)."""

    call_sid: str
    account_sid: str
    from_number: str
    to_number: str

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> WebhookCall:
        missing = [key for key in ("CallSid", "To") if not form.get(key)]
        if missing:
            raise RemoteProtocolError(f"voice webhook without {', '.join(missing)}")
        return cls(
            call_sid=form["CallSid"],
            account_sid=form.get("AccountSid", ""),
            from_number=form.get("From", ""),
            to_number=form["To"],
        )


class Bridge:
    """Owns every pending and live call of this process."""

    def __init__(
        self,
        *,
        config: BridgeConfig,
        personas: Callable[[], PersonaBook],
        admission: Admission,
        factories: Mapping[str, ModelSessionFactory],
        journals: JournalFactory,
        clock: Callable[[], float],
        metrics: BridgeMetrics | None = None,
        guard: TollFraudGuard | None = None,
        personal: PersonalCalls | None = None,
    ) -> None:
        self.config = config
        self._personas = personas
        self.admission = admission
        self._factories = factories
        self._journals = journals
        self._clock = clock
        self.metrics = metrics or BridgeMetrics()
        self.pending = PendingCalls()
        self.outcomes = OutcomeBook()
        self.live: dict[str, CallSession] = {}
        self._call_tasks: set[asyncio.Task[None]] = set()
        self._sweeper_wake = asyncio.Event()
        self._call_finished = asyncio.Event()
        self.guard = guard
        # Calls the guard admitted, until their slot is given back: a call holds
        # a slot exactly while its (current) lease is unreleased, the same truth
        # the instance-wide cap counts, whichever exit path released it.
        self._guarded_calls: list[PendingCall] = []
        self._answered = AnsweredCalls()
        # Business hours, context lookup, prompt templates (issue 15).
        self.personal = personal or PersonalCalls(registry=self.metrics.registry)

    # -- POST /twilio/voice ------------------------------------------------------

    async def voice_webhook(self, form: Mapping[str, str]) -> str:
        """The TwiML answer to Twilio's voice webhook."""
        call = WebhookCall.from_form(form)
        retry = self.pending.by_call_sid(call.call_sid)
        if retry is not None:
            # Twilio retried the webhook: answer the same stream, open nothing new.
            return self._connect_twiml(retry)
        if call.call_sid in self._answered:
            # A signed webhook replayed after its call was answered: open nothing.
            log.warning(
                "voice webhook replayed; not answered again", extra={"call_sid": call.call_sid}
            )
            return twiml.hangup()
        self._answered.add(call.call_sid)
        persona = self._personas().for_number(call.to_number)
        if persona is None:
            log.warning("no persona for %s and no default", call.to_number)
            return twiml.say_and_hangup(NOT_IN_SERVICE)
        incoming = IncomingCall.from_form(form)
        in_hours = self.personal.during_hours(persona, self._personas(), incoming)
        if isinstance(in_hours, ClosedAnswer):
            # No lease, no model session: the closed message and a `closed` row.
            self.metrics.calls.labels("closed", CallEndReason.CLOSED.value).inc()
            await self._journals.record_unanswered(
                UnansweredCall(call.call_sid, call.from_number, call.to_number),
                persona,
                CallEndReason.CLOSED,
                "outside business hours",
            )
            return _say(persona, in_hours.text)
        persona = in_hours
        admitted_caller: str | None = None
        if self.guard is not None:
            # Before the lease: a refused call opens no model session and costs nothing.
            self._guarded_calls = [p for p in self._guarded_calls if not p.lease.released]
            caller = caller_key(call.from_number)
            active = sum(1 for p in self._guarded_calls if caller_key(p.from_number) == caller)
            decision = self.guard.check(call.from_number, self._clock(), active_calls=active)
            if isinstance(decision, Refused):
                log.warning(
                    "toll-fraud guard refused a call from %s: %s (%s)",
                    mask_number(decision.caller),
                    decision.reason.value,
                    decision.detail,
                    extra={"call_sid": call.call_sid, "persona": persona.id},
                )
                self.metrics.calls.labels("busy", CallEndReason.RATE_LIMITED.value).inc()
                self.metrics.calls_refused.labels(decision.reason.value).inc()
                await self._journals.record_unanswered(
                    UnansweredCall(call.call_sid, call.from_number, call.to_number),
                    persona,
                    CallEndReason.RATE_LIMITED,
                    f"{decision.reason.value}: {decision.detail}",
                )
                return _say(
                    persona, self.personal.say_text(persona.busy_message, incoming, persona, "busy")
                )
            admitted_caller = decision.caller
        try:
            lease = self.admission.acquire(persona.provider, persona.overflow)
        except CapacityError as exc:
            log.info("busy: %s", exc, extra={"call_sid": call.call_sid})
            self.metrics.calls.labels("busy", CallEndReason.BUSY.value).inc()
            await self._journals.record_unanswered(
                UnansweredCall(call.call_sid, call.from_number, call.to_number),
                persona,
                CallEndReason.BUSY,
                str(exc),
            )
            return _say(
                persona, self.personal.say_text(persona.busy_message, incoming, persona, "busy")
            )
        try:
            # The context lookup and the prompt: before the model opens (the
            # prompt is a connect parameter). Never raises by design; a bug
            # must still give the slot back.
            prepared = await self.personal.prepare(incoming, persona)
        except BaseException:
            lease.release()
            raise
        pending = self._reserve(call, prepared.persona, lease)
        pending.events.extend(prepared.events)
        if self.guard is not None and admitted_caller is not None:
            # Counted only now, with a slot taken: a busy answer uses no quota.
            self.guard.record(admitted_caller, self._clock())
            self._guarded_calls.append(pending)
        await self._hold_answer(pending)
        return self._connect_twiml(pending)

    async def _hold_answer(self, pending: PendingCall) -> None:
        """Let the caller hear ringback until the model is ready, within the persona's bound."""
        within = self.personal.answer_within(pending.persona)
        if within <= 0:
            return
        started = self._clock()
        ready = await answer_when_ready(pending.opening, within)
        held = self._clock() - started
        self.personal.metrics.answer_held.observe(held)
        pending.events.append(
            (held, "answer_held", f"{held:.3f}s, model {'ready' if ready else 'not ready yet'}")
        )

    def _reserve(self, call: WebhookCall, persona: Persona, lease: Lease) -> PendingCall:
        session = self._new_session(persona, lease)
        now = self._clock()
        pending = PendingCall(
            call_sid=call.call_sid,
            account_sid=call.account_sid,
            from_number=call.from_number,
            to_number=call.to_number,
            persona=persona,
            lease=lease,
            session=session,
            token=new_token(),
            created=now,
            deadline=now + self.config.pending_timeout,
        )
        if lease.overflowed:
            pending.events.append((0.0, "overflow", f"to {lease.provider}"))
        pending.opening = asyncio.create_task(
            self._open_model(pending), name=f"{call.call_sid}:open"
        )
        self.pending.add(pending)
        self._sweeper_wake.set()
        return pending

    def _new_session(self, persona: Persona, lease: Lease) -> ModelSession:
        factory = self._factories[lease.provider]
        return factory.create(persona.session_request(), server_url=lease.server_url)

    async def _open_model(self, pending: PendingCall) -> ModelSession:
        """Open the model; on a retryable failure move once to the overflow provider."""
        try:
            await pending.session.open()
            return pending.session
        except ModelError as exc:
            if isinstance(exc, HandshakeTimeout | ModelBusy) and pending.lease.server_url:
                # The server may be stuck in a session nobody owns (§2.5).
                self.admission.pool.rest(pending.lease.server_url)
            overflow = pending.persona.overflow
            if not exc.retryable or overflow is None or pending.lease.overflowed:
                raise
            log.warning(
                "model open failed (%s); overflowing to %s",
                exc,
                overflow,
                extra={"call_sid": pending.call_sid},
            )
        # Outside the except block, so a failure here does not chain the first one.
        try:
            pending.lease = self.admission.move_to_overflow(pending.lease, overflow)
        except CapacityError as exc:
            raise ModelBusy(str(exc)) from exc
        pending.events.append((self._clock() - pending.created, "overflow", f"to {overflow}"))
        pending.session = self._new_session(pending.persona, pending.lease)
        await pending.session.open()
        return pending.session

    def _connect_twiml(self, pending: PendingCall) -> str:
        return twiml.connect_stream(
            self.config.stream_url,
            self.config.action_url,
            {
                "call_sid": pending.call_sid,
                "persona": pending.persona.id,
                "from": pending.from_number,
                "to": pending.to_number,
                "token": pending.token,
            },
        )

    # -- WS /twilio/media ------------------------------------------------------------

    async def media_stream(self, phone: PhoneSocket) -> None:
        """Run one media stream to its end. The socket is already accepted."""
        stream = MediaStreamProtocol()
        start = await self._await_start(phone, stream)
        if start is None:
            await phone.close(1008)
            return
        token = start.custom_parameters.get("token", "")
        pending = self.pending.claim(token, start.call_sid)
        if pending is None:
            log.warning(
                "media stream with an unknown or used token", extra={"call_sid": start.call_sid}
            )
            self._sweeper_wake.set()  # a burnt token may have abandoned a pending call
            await phone.close(1008)
            return
        journal = await self._journals.open(pending, start.stream_sid)
        session = CallSession(
            pending=pending,
            stream=stream,
            phone=phone,
            journal=journal,
            clock=self._clock,
            on_outcome=self.outcomes.record,
            metrics=self.metrics,
        )
        self.live[pending.call_sid] = session
        try:
            outcome = await session.run()
        finally:
            self.live.pop(pending.call_sid, None)
            self._call_finished.set()
        log.info(
            "call ended: %s (%s)",
            outcome.reason.value,
            outcome.detail,
            extra={"call_sid": outcome.call_sid, "persona": outcome.persona_id},
        )

    async def _await_start(self, phone: PhoneSocket, stream: MediaStreamProtocol) -> Start | None:
        """Read up to the ``start`` message; ``None`` if it never comes or is malformed."""
        try:
            async with asyncio.timeout(self.config.start_timeout):
                while stream.start is None:
                    raw = await phone.receive()
                    if raw is None:
                        return None
                    stream.receive(raw, self._clock())
        except (TimeoutError, RemoteProtocolError) as exc:
            log.warning("media stream rejected before start: %r", exc)
            return None
        return stream.start

    # -- POST /twilio/stream-ended ----------------------------------------------------

    async def stream_ended(self, form: Mapping[str, str]) -> str:
        """TwiML for after the stream: the fallback if the call ended badly."""
        call_sid = form.get("CallSid", "")
        outcome = self.outcomes.pop(call_sid)
        if outcome is None and call_sid in self.live:
            # The socket closed under a live call (the server refused an
            # oversize frame, the connection broke): Twilio asks at once, and
            # the call's teardown records why a moment later.
            outcome = await self.outcomes.wait_pop(call_sid, within=OUTCOME_WAIT_SECONDS)
        if outcome is None:
            pending = self.pending.withdraw(call_sid)
            if pending is not None:
                # The stream failed before it claimed the call: free the model
                # socket (billed) now rather than at the pending deadline.
                outcome = await self._abandon(
                    pending, CallEndReason.NO_STREAM, "stream ended before it started"
                )
        if outcome is None:
            return twiml.hangup()
        persona = self._personas().by_id(outcome.persona_id)
        if persona is None:
            return twiml.hangup()
        if outcome.reason.wants_fallback:
            fallback = persona.fallback
            say = self.personal.fallback_say(call_sid, persona)
            if fallback.transfer_to:
                return twiml.dial(fallback.transfer_to, message=say)
            return _say(persona, say)
        if outcome.reason in (CallEndReason.MAX_DURATION, CallEndReason.CALLER_SILENCE):
            return _say(persona, GOODBYE)
        return twiml.hangup()

    # -- POST /twilio/call-status ------------------------------------------------------

    async def call_status(self, form: Mapping[str, str]) -> None:
        """Twilio's status callback: a call that ended while it rang frees its model at once.

        Without it, a caller who hangs up during the ringing (the webhook held
        its answer, or the stream had not come yet) keeps a billed model socket
        open until the pending deadline.
        """
        if form.get("CallStatus", "") not in _ENDED_STATUSES:
            return
        pending = self.pending.withdraw(form.get("CallSid", ""))
        if pending is not None:
            await self._abandon(
                pending, CallEndReason.CALLER_HANGUP, "caller hung up before the stream started"
            )

    # -- housekeeping ---------------------------------------------------------------

    async def sweep_pending_forever(self) -> None:
        """Close the model sessions of calls whose stream never came."""
        while True:
            deadline = self.pending.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            self._sweeper_wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._sweeper_wake.wait()
            for call in self.pending.expire(self._clock()):
                await self._abandon(call, CallEndReason.NO_STREAM, "stream never arrived")

    async def _abandon(self, call: PendingCall, reason: CallEndReason, detail: str) -> CallOutcome:
        log.warning("abandoning pending call: %s", detail, extra={"call_sid": call.call_sid})
        call.opening.cancel()
        with contextlib.suppress(Exception):
            await call.session.close()
        with contextlib.suppress(BaseException):
            await call.opening
        call.lease.release()
        self.metrics.calls.labels("no_stream", reason.value).inc()
        self.metrics.model_socket_seconds.labels(call.session.provider).inc(
            call.session.timings.socket_seconds(self._clock())
        )
        outcome = CallOutcome(call.call_sid, call.persona.id, reason, detail)
        await self._journals.record_unanswered_pending(call, outcome, self._clock())
        return outcome

    async def drain(self, deadline_seconds: float) -> None:
        """Stop taking calls, let live ones finish until the deadline, then end them.

        Calls ended by the drain close their stream, so Twilio asks the
        ``<Connect action>`` URL and the caller hears the persona's fallback
        (or is transferred) instead of dead air; their records are written.
        """
        self.admission.draining = True
        for call in self.pending.drain_all():
            await self._abandon(call, CallEndReason.DRAIN, "shutting down")
        await self._wait_for_no_live_calls(deadline_seconds)
        for session in list(self.live.values()):
            session.end(CallEndReason.DRAIN, "drain deadline reached")
        # Teardown is quick (close sockets, write the journal); wait for it.
        await self._wait_for_no_live_calls(5.0)

    async def _wait_for_no_live_calls(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while self.live:
                    self._call_finished.clear()
                    await self._call_finished.wait()


_ENDED_STATUSES = frozenset({"completed", "canceled", "busy", "failed", "no-answer"})
"""Twilio's final call statuses (PROTOCOLS.md §1: StatusCallback ``CallStatus``)."""


def _say(persona: Persona, message: str) -> str:
    return twiml.say_and_hangup(message, voice=persona.tts_voice)
