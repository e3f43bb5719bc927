"""The bridge service: Twilio's three requests, and the calls they create.

- ``POST /twilio/voice`` (:meth:`Bridge.voice_webhook`): pick the persona by
  the dialled number, take a lease, *start opening the model session now*,
  answer ``<Connect><Stream>`` (PROTOCOLS.md §1.1) with a one-time token.
- ``WS /twilio/media`` (:meth:`Bridge.media_stream`): read ``connected`` and
  ``start``, claim the pending call with the token, run the
  :class:`~phonebridge.calls.session.CallSession`.
- ``POST /twilio/stream-ended`` (:meth:`Bridge.stream_ended`): Twilio asks
  what to do after the stream closed; answer the persona's fallback when the
  call ended badly, else hang up. A call this process never held (its
  replica died, or this process restarted) gets the fallback too: its stream
  ended without an outcome because the process holding it was gone.

In a cluster the stream and action paths carry the replica id
(``/twilio/r/<id>/...``, config.Settings.sticky_prefix) so the edge proxy
brings them back to the replica holding the call.

Signatures are checked by the web layer before these are called; this module
holds the call logic only, so tests can drive it without HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from phonebridge.calls.admission import Admission, Lease
from phonebridge.calls.guard import AnsweredCalls, Refused, mask_number
from phonebridge.calls.journal import JournalFactory, UnansweredCall
from phonebridge.calls.leg import Leg
from phonebridge.calls.outcome import CallEndReason, CallOutcome, OutcomeBook
from phonebridge.calls.pending import PendingCall, PendingCalls, new_token
from phonebridge.calls.session import CallSession
from phonebridge.coordination.base import CallGuard, ReplayMemory
from phonebridge.coordination.memory import MemoryReplay
from phonebridge.errors import (
    CapacityError,
    HandshakeTimeout,
    ModelBusy,
    ModelError,
    RemoteProtocolError,
)
from phonebridge.metrics import BridgeMetrics
from phonebridge.models.base import ModelSession, ModelSessionFactory, SessionRequest
from phonebridge.personas.book import PersonaBook
from phonebridge.personas.schema import Persona
from phonebridge.telephony.twilio import twiml
from phonebridge.telephony.twilio.leg import PhoneSocket, TwilioLeg, await_start
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


@dataclass(frozen=True, slots=True)
class PhoneCall:
    """A phone leg's call webhook, as :meth:`Bridge.answer_phone` takes it (any carrier)."""

    channel: str  # twilio, telnyx, plivo, vonage, signalwire, exotel
    call_sid: str  # the carrier's call id (what its stream's start names)
    from_number: str
    to_number: str  # E.164
    account_sid: str = ""
    sample_rate: int = 8_000  # the leg's rate, as the answer will ask the carrier for it


@dataclass(frozen=True, slots=True)
class Say:
    """Speak ``message`` and hang up."""

    message: str
    voice: str | None = None


@dataclass(frozen=True, slots=True)
class Transfer:
    """Connect the caller to ``number`` (E.164), after ``message`` when there is one."""

    number: str
    message: str | None = None
    voice: str | None = None


@dataclass(frozen=True, slots=True)
class Hangup:
    """End the call."""


AfterStream = Say | Transfer | Hangup
"""What a carrier does instead of (or after) a stream; each renders it its own way."""


@dataclass(frozen=True, slots=True)
class NewCall:
    """A call some leg's entry asks the bridge to admit (see :meth:`Bridge.admit`)."""

    call_sid: str
    from_number: str
    to_number: str
    persona: Persona
    request: SessionRequest
    """What to open the model with: the persona's, or a one-call override, at the leg's rate."""
    channel: str
    """The kind of leg (``twilio``, ``browser``), as stored on the call row."""
    account_sid: str = ""
    placed_by: str | None = None
    """The dashboard user who placed it (a browser call)."""


@dataclass(frozen=True, slots=True)
class CallRefused:
    """The guard or the capacity said no: nothing was opened, the refusal is on record."""

    reason: CallEndReason  # RATE_LIMITED or BUSY
    detail: str


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
        guard: CallGuard | None = None,
        replay: ReplayMemory | None = None,
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
        # Answered call SIDs (replays open nothing); shared by every replica
        # when coordination is in Redis.
        self._answered = replay or MemoryReplay()
        # Calls this process wrote a <Connect> for: an action request for any
        # other call comes from a replica that died (or from before a restart).
        self._held = AnsweredCalls()

    @property
    def clock(self) -> Callable[[], float]:
        """The monotonic clock calls run on (legs' entries use it too)."""
        return self._clock

    def persona_book(self) -> PersonaBook:
        """The personas as loaded now (they reload when the files change)."""
        return self._personas()

    # -- POST /twilio/voice ------------------------------------------------------

    async def voice_webhook(self, form: Mapping[str, str]) -> str:
        """The TwiML answer to Twilio's voice webhook."""
        call = WebhookCall.from_form(form)
        answer = await self.answer_phone(
            PhoneCall(
                channel="twilio",
                call_sid=call.call_sid,
                from_number=call.from_number,
                to_number=call.to_number,
                account_sid=call.account_sid,
            )
        )
        if isinstance(answer, PendingCall):
            return self._connect_twiml(answer)
        return render_twiml(answer)

    async def answer_phone(self, call: PhoneCall) -> PendingCall | Say | Hangup:
        """A phone leg's call webhook, whatever the carrier: reserve the call, or say why not.

        A :class:`PendingCall` means *connect its stream* (a webhook retry gets
        the same pending call back, nothing new is opened); :class:`Say` /
        :class:`Hangup` are the answer instead of a stream (no persona for the
        number, busy, a replayed webhook). Each carrier renders the result in
        its own answer document (TwiML, Plivo XML, an NCCO, Call Control REST).
        """
        retry = self.pending.by_call_sid(call.call_sid)
        if retry is not None:
            return retry
        if not await self._answered.first_answer(call.call_sid):
            # A signed webhook replayed after its call was answered: open nothing.
            log.warning(
                "call webhook replayed; not answered again", extra={"call_sid": call.call_sid}
            )
            return Hangup()
        persona = self._personas().for_number(call.to_number, call.channel)
        if persona is None:
            log.warning("no persona for %s and no default", call.to_number)
            return Say(NOT_IN_SERVICE)
        admitted = await self.admit(
            NewCall(
                call_sid=call.call_sid,
                account_sid=call.account_sid,
                from_number=call.from_number,
                to_number=call.to_number,
                persona=persona,
                request=persona.session_request(call.sample_rate),
                channel=call.channel,
            )
        )
        if isinstance(admitted, CallRefused):
            return Say(persona.busy_message, persona.tts_voice)
        self._held.add(admitted.call_sid)
        return admitted

    async def admit(self, call: NewCall) -> PendingCall | CallRefused:
        """The one reservation path every leg's entry shares (phone webhook, browser).

        The toll-fraud guard first (a refused call opens no model session and
        costs nothing), then a lease, then the model session starts opening:
        the call is pending until its leg claims it with the one-time token.
        A refusal is recorded on the call index like any call.
        """
        persona = call.persona
        unanswered = UnansweredCall(
            call.call_sid, call.from_number, call.to_number, call.channel, call.placed_by
        )
        admitted_caller: str | None = None
        if self.guard is not None:
            # Before the lease: a refused call opens no model session and costs nothing.
            decision = await self.guard.admit(call.from_number, call.call_sid)
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
                detail = f"{decision.reason.value}: {decision.detail}"
                await self._journals.record_unanswered(
                    unanswered, persona, CallEndReason.RATE_LIMITED, detail
                )
                return CallRefused(CallEndReason.RATE_LIMITED, detail)
            admitted_caller = decision.caller
        try:
            lease = await self.admission.acquire(persona.provider, persona.overflow)
        except CapacityError as exc:
            if self.guard is not None and admitted_caller is not None:
                await self.guard.cancel(admitted_caller, call.call_sid)  # busy uses no quota
            log.info("busy: %s", exc, extra={"call_sid": call.call_sid})
            self.metrics.calls.labels("busy", CallEndReason.BUSY.value).inc()
            await self._journals.record_unanswered(
                unanswered, persona, CallEndReason.BUSY, str(exc)
            )
            return CallRefused(CallEndReason.BUSY, str(exc))
        if self.guard is not None and admitted_caller is not None:
            # Counted only now, with a slot taken: a busy answer uses no quota.
            # The call holds its guard slot exactly as long as its (current)
            # lease, whichever exit path releases it.
            self.guard.confirm(admitted_caller, call.call_sid)
            lease.riders.append(
                functools.partial(self.guard.release, admitted_caller, call.call_sid)
            )
        return self._reserve(call, lease)

    def _reserve(self, call: NewCall, lease: Lease) -> PendingCall:
        session = self._new_session(call.request, lease)
        now = self._clock()
        pending = PendingCall(
            call_sid=call.call_sid,
            account_sid=call.account_sid,
            from_number=call.from_number,
            to_number=call.to_number,
            persona=call.persona,
            lease=lease,
            session=session,
            token=new_token(),
            created=now,
            deadline=now + self.config.pending_timeout,
            request=call.request,
            channel=call.channel,
            placed_by=call.placed_by,
        )
        if lease.overflowed:
            pending.events.append((0.0, "overflow", f"to {lease.provider}"))
        pending.opening = asyncio.create_task(
            self._open_model(pending), name=f"{call.call_sid}:open"
        )
        self.pending.add(pending)
        self._sweeper_wake.set()
        return pending

    def _new_session(self, request: SessionRequest, lease: Lease) -> ModelSession:
        factory = self._factories[lease.provider]
        return factory.create(request, server_url=lease.server_url)

    async def _open_model(self, pending: PendingCall) -> ModelSession:
        """Open the model; on a retryable failure move once to the overflow provider."""
        try:
            await pending.session.open()
            return pending.session
        except ModelError as exc:
            if isinstance(exc, HandshakeTimeout | ModelBusy) and pending.lease.server_url:
                # The server may be stuck in a session nobody owns (§2.5).
                await self.admission.pool.rest(pending.lease.server_url)
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
            pending.lease = await self.admission.move_to_overflow(pending.lease, overflow)
        except CapacityError as exc:
            raise ModelBusy(str(exc)) from exc
        pending.events.append((self._clock() - pending.created, "overflow", f"to {overflow}"))
        pending.session = self._new_session(pending.request, pending.lease)
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
        start = await await_start(
            phone, stream, start_timeout=self.config.start_timeout, clock=self._clock
        )
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
        await self.run_call(
            pending, TwilioLeg(phone, stream, clock=self._clock, call_sid=start.call_sid)
        )

    def claim(self, token: str, call_sid: str) -> PendingCall | None:
        """The pending call ``token`` reserved for ``call_sid``; once only (any leg)."""
        pending = self.pending.claim(token, call_sid)
        if pending is None:
            self._sweeper_wake.set()  # a burnt token may have abandoned a pending call
        return pending

    async def run_call(self, pending: PendingCall, leg: Leg) -> CallOutcome:
        """Run a claimed call on its leg to the end: the one call path for every leg."""
        journal = await self._journals.open(pending, leg.stream_id)
        session = CallSession(
            pending=pending,
            leg=leg,
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
        return outcome

    async def abandon(self, pending: PendingCall, reason: CallEndReason, detail: str) -> None:
        """A pending call whose leg will never come (the browser left before the model
        was ready): free its model socket and lease now, record it."""
        if self.pending.withdraw(pending.call_sid) is pending:
            await self._abandon(pending, reason, detail)

    # -- POST /twilio/stream-ended ----------------------------------------------------

    async def stream_ended(self, form: Mapping[str, str]) -> str:
        """TwiML for after the stream: the fallback if the call ended badly."""
        return render_twiml(await self.after_stream(form.get("CallSid", ""), form.get("To", "")))

    async def after_stream(
        self, call_sid: str, to_number: str, carrier: str = "twilio"
    ) -> AfterStream:
        """What the caller hears once the stream of ``call_sid`` is over (any carrier).

        Asked by the carrier when the stream ended with the caller still on the
        line (Twilio's and SignalWire's ``<Connect action>``, Vonage's
        ``disconnected`` event): the fallback if the call ended badly, a
        goodbye at a limit, else hang up. ``to_number`` (dialled through
        ``carrier``, the carrier of the request) finds the persona of a call
        this process never held (its replica died), as the call webhook did.
        """
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
            if call_sid in self._held:
                return Hangup()  # its outcome was answered already (a repeated request)
            return self._fallback_for_unheld_call(call_sid, to_number, carrier)
        return self.decide(outcome)

    def decide(self, outcome: CallOutcome) -> AfterStream:
        """The fallback if the call ended badly, a goodbye at a limit, else hang up."""
        persona = self._personas().by_id(outcome.persona_id)
        if persona is None:
            return Hangup()
        if outcome.reason.wants_fallback:
            return _fallback(persona)
        if outcome.reason in (CallEndReason.MAX_DURATION, CallEndReason.CALLER_SILENCE):
            return Say(GOODBYE, persona.tts_voice)
        return Hangup()

    def _fallback_for_unheld_call(self, call_sid: str, to_number: str, carrier: str) -> AfterStream:
        """The action request of a call another (dead) replica held: the persona's fallback.

        Twilio asks the ``<Connect action>`` only when the stream ended without
        the caller hanging up, so a caller is still on the line; with no outcome
        anywhere, the replica holding the call died (the edge proxy sent its
        action here) or this one restarted. The persona comes from the dialled
        number in the carrier's signed request, routed as the call webhook
        routed it (a number bound to ``carrier`` finds its persona; one bound to
        another carrier does not).
        """
        persona = self._personas().for_number(to_number, carrier)
        if persona is None:
            return Hangup()
        log.warning(
            "stream ended for a call this replica does not hold (its replica is gone); "
            "answering the persona's fallback",
            extra={"call_sid": call_sid, "persona": persona.id},
        )
        return _fallback(persona)

    def pending_call(self, token: str) -> PendingCall | None:
        """The pending call ``token`` reserved, without claiming it (a socket's upgrade check)."""
        return self.pending.get(token)

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


def render_twiml(answer: AfterStream) -> str:
    """TwiML (and SignalWire's cXML, the same verbs) for an answer without a stream."""
    match answer:
        case Say():
            return twiml.say_and_hangup(answer.message, voice=answer.voice)
        case Transfer():
            return twiml.dial(answer.number, message=answer.message)
    return twiml.hangup()


def _fallback(persona: Persona) -> AfterStream:
    fallback = persona.fallback
    if fallback.transfer_to:
        return Transfer(fallback.transfer_to, fallback.say, persona.tts_voice)
    return Say(fallback.say, persona.tts_voice)
