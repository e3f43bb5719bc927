"""The bridge service: every leg's calls, from admission to their outcome.

A leg's entry (its carrier's webhooks and media socket) lives with the leg:
Twilio's in telephony/twilio/entry.py, the further carriers' in
web/carriers/, the browser's in web/softphone/. Each hands its call to the
public methods here: :meth:`Bridge.answer_phone` (a phone leg's call webhook,
any carrier) or :meth:`Bridge.admit`, then :meth:`Bridge.claim` with the
one-time token when its media socket comes, :meth:`Bridge.run_call` on its
:class:`~phonebridge.calls.leg.Leg`, and :meth:`Bridge.after_stream` for what
the caller hears once the stream is over. Nothing here names a carrier's
wire format: each renders :data:`AfterStream` its own way.

Every leg's entry admits its call through :meth:`Bridge.admit`: business
hours, the toll-fraud guard, a lease, the context lookup and the prompt
rendered (calls/personal.py), then the model session starts opening.
Answering when the model is ready (calls/ready_answer.py) is a phone
webhook's own step (:meth:`Bridge.hold_answer`): only it holds an answer.

A per-call :class:`~phonebridge.calls.policy.CallPolicy` (``policies``; the
persona's transfer triggers, calls/transfer/) may end a call with a
:class:`~phonebridge.calls.outcome.Handoff`: :meth:`Bridge.decide` then
answers :class:`Transfer` (cold) or :class:`Join` (warm), and nothing
follows that verb.

Signatures are checked by the web layer before the entries are called; this
module holds the call logic only, so tests can drive it without HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from phonebridge.calls.admission import Admission, Lease
from phonebridge.calls.guard import AnsweredCalls, Refused, mask_number
from phonebridge.calls.journal import JournalFactory, UnansweredCall
from phonebridge.calls.leg import Leg
from phonebridge.calls.outcome import CallEndReason, CallOutcome, OutcomeBook
from phonebridge.calls.pending import PendingCall, PendingCalls, new_token
from phonebridge.calls.personal import (
    ClosedAnswer,
    IncomingCall,
    PersonalCalls,
)
from phonebridge.calls.policy import CallPolicy, Policies
from phonebridge.calls.ready_answer import answer_when_ready
from phonebridge.calls.session import CallSession
from phonebridge.coordination.base import CallGuard, ReplayMemory, RingingHangups
from phonebridge.coordination.memory import MemoryReplay, MemoryRingingHangups
from phonebridge.errors import (
    CapacityError,
    HandshakeTimeout,
    ModelBusy,
    ModelError,
)
from phonebridge.metrics import BridgeMetrics, server_label
from phonebridge.models.base import ModelSession, ModelSessionFactory, SessionRequest
from phonebridge.personas.book import PersonaBook
from phonebridge.personas.schema import Persona

log = logging.getLogger(__name__)

NOT_IN_SERVICE = "The number you have dialled is not in service. Goodbye."
GOODBYE = "Thank you for calling. Goodbye."
# How long the action request waits for a live call's teardown to record its outcome;
# teardown closes one socket and writes a row, well under a second.
OUTCOME_WAIT_SECONDS = 3.0


PolicyFactory = Callable[[PendingCall, Leg], CallPolicy | None]
"""Makes a call's policy (None: nothing to watch on this call)."""
"""Makes a claimed call's policy (or None) from the call and its leg."""


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """What the call logic needs from the settings."""

    pending_timeout: float = 15.0  # how long a webhook's reservation waits for its stream


@dataclass(frozen=True, slots=True)
class PhoneCall:
    """A phone leg's call webhook, as :meth:`Bridge.answer_phone` takes it (any carrier)."""

    channel: str  # twilio, telnyx, plivo, vonage, signalwire, exotel
    call_sid: str  # the carrier's call id (what its stream's start names)
    from_number: str
    to_number: str  # E.164
    account_sid: str = ""
    sample_rate: int = 8_000  # the leg's rate, as the answer will ask the carrier for it
    direction: str = "inbound"
    fields: Mapping[str, str] = field(default_factory=dict)
    """The carrier's own call fields (Twilio's form), for ``{{ carrier.X }}`` (bounded:
    calls/personal.py ``carrier_fields``)."""


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


@dataclass(frozen=True, slots=True)
class Join:
    """Join the room ``room`` where a human who accepted a warm transfer waits."""

    room: str


AfterStream = Say | Transfer | Hangup | Join
"""What a carrier does instead of (or after) a stream; each renders it its own way
(a carrier that cannot join a room never gets :class:`Join`: only a leg whose
carrier rings the human for a warm transfer hands one over)."""


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
    """Who placed it: the dashboard user (a browser call), ``operator:<name>`` or
    ``campaign:<id>`` (an outbound call); None for a call we received."""
    direction: str = "inbound"
    """``outbound`` for a call we placed (phonebridge/outbound/): the toll-fraud
    guard then counts the number we ring (``to_number``), not our caller ID; the
    context lookup tells its receiver."""
    carrier: Mapping[str, str] = field(default_factory=dict)
    """The carrier's own call fields, for the persona's templates (``{{ carrier.X }}``)."""
    variables: Mapping[str, str] = field(default_factory=dict)
    """Per-call values from the entry (an outbound call's ``--var`` or contact row),
    for the persona's templates (``{{ contact.X }}``)."""

    @property
    def party(self) -> str:
        """The other end: whom the toll-fraud guard's per-number limits count."""
        return self.to_number if self.direction == "outbound" else self.from_number


@dataclass(slots=True)
class Screened:
    """A call the toll-fraud guard admitted before it takes a lease (:meth:`Bridge.screen`).

    An outbound call whose model opens at answer is screened when dialled (a
    refusal costs nothing: nobody is rung) and admitted when answered; while it
    rings it holds its guard reservation, and once the carrier took it, it
    counts (:meth:`Bridge.confirm_screened`).
    """

    call_sid: str
    """The SID the guard knows the call by (an outbound call's provisional one)."""
    caller: str | None
    """The guard's bucket; None when there is no guard."""
    confirmed: bool = False


@dataclass(frozen=True, slots=True)
class CallRefused:
    """Hours, the guard or the capacity said no: nothing was opened, the refusal is on record."""

    reason: CallEndReason  # CLOSED, RATE_LIMITED or BUSY
    detail: str
    say: str
    """What the caller is told (the persona's closed or busy message, rendered)."""
    persona: Persona
    """The persona whose message it is (its TTS voice says it)."""


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
        policies: PolicyFactory | None = None,
        personal: PersonalCalls | None = None,
        hangups: RingingHangups | None = None,
    ) -> None:
        self.config = config
        self._policies: list[PolicyFactory] = [policies] if policies is not None else []
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
        # Set by the outbound service (phonebridge/outbound/): told of keypad
        # digits, and asked first what the carrier does after a call's stream ended.
        self.after_call: Callable[[CallOutcome, Persona], AfterStream | None] | None = None
        # Answered call SIDs (replays open nothing); shared by every replica
        # when coordination is in Redis.
        self._answered = replay or MemoryReplay()
        # "Hung up while ringing", heard by one replica, told to all (shared in
        # Redis like the replay memory).
        self.hangups = hangups or MemoryRingingHangups()
        # Calls this process answered with a stream: an action request for any
        # other call comes from a replica that died (or from before a restart).
        self._held = AnsweredCalls()
        # Business hours, the context lookup, prompt templates (issue 15).
        self.personal = personal or PersonalCalls(registry=self.metrics.registry)
        # Calls of dead replicas this one answered the fallback for (their row is
        # checked once, even if the carrier repeats the action request).
        self._orphans = AnsweredCalls()

    @property
    def clock(self) -> Callable[[], float]:
        """The monotonic clock calls run on (legs' entries use it too)."""
        return self._clock

    def persona_book(self) -> PersonaBook:
        """The personas as loaded now (they reload when the files change)."""
        return self._personas()

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
                direction=call.direction,
                carrier=call.fields,
            )
        )
        if isinstance(admitted, CallRefused):
            return Say(admitted.say, admitted.persona.tts_voice)
        self._held.add(admitted.call_sid)
        return admitted

    async def hold_answer(self, pending: PendingCall) -> None:
        """Let the caller hear ringback until the model is ready, within the persona's bound.

        A phone webhook's own step, before it answers with its stream: only a
        webhook holds an answer. The caller may hang up meanwhile
        (:meth:`still_pending` tells)."""
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

    async def admit(
        self, call: NewCall, screened: Screened | None = None
    ) -> PendingCall | CallRefused:
        """The one reservation path every leg's entry shares (phone webhook, browser,
        carriers, an outbound call when it is dialled or answered).

        Business hours first (outside them: the closed message or another
        persona), then the toll-fraud guard (a refused call opens no model
        session and costs nothing; ``screened``: it was asked already,
        :meth:`screen`), then a lease, then the context lookup and the prompt
        rendered into the call's request, then the model session starts
        opening: the call is pending until its leg claims it with the one-time
        token. A refusal is recorded on the call index like any call.
        """
        incoming = _incoming(call)
        in_hours = self.personal.during_hours(call.persona, self._personas(), incoming)
        if isinstance(in_hours, ClosedAnswer):
            # No lease, no model session: the closed message and a `closed` row.
            if screened is not None:
                await self.release_screened(screened)
            self.metrics.calls.labels("closed", CallEndReason.CLOSED.value).inc()
            detail = "outside business hours"
            await self._journals.record_unanswered(
                _unanswered(call), call.persona, CallEndReason.CLOSED, detail
            )
            return CallRefused(CallEndReason.CLOSED, detail, in_hours.text, call.persona)
        if in_hours is not call.persona:
            call = _routed(call, in_hours)
        if screened is None:
            passed = await self.screen(call)
            if isinstance(passed, CallRefused):
                return passed
            screened = passed
        persona = call.persona
        try:
            lease = await self.admission.acquire(persona.provider, persona.overflow)
        except CapacityError as exc:
            await self.release_screened(screened)  # busy uses no quota
            log.info("busy: %s", exc, extra={"call_sid": call.call_sid})
            self.metrics.calls.labels("busy", CallEndReason.BUSY.value).inc()
            await self._journals.record_unanswered(
                _unanswered(call), persona, CallEndReason.BUSY, str(exc)
            )
            return CallRefused(
                CallEndReason.BUSY, str(exc), self._busy_say(incoming, persona), persona
            )
        if self.guard is not None and screened.caller is not None:
            # Counted only now, with a slot taken: a busy answer uses no quota.
            # The call holds its guard slot exactly as long as its (current)
            # lease, whichever exit path releases it.
            if not screened.confirmed:
                self.confirm_screened(screened)
            lease.riders.append(
                functools.partial(self.guard.release, screened.caller, screened.call_sid)
            )
        try:
            # The context lookup and the prompt: before the model opens (the
            # prompt is a connect parameter). Never raises by design; a bug
            # must still give the slot (and the guard's, a rider) back.
            prepared = await self.personal.prepare(incoming, persona, call.request.prompt)
        except BaseException:
            lease.release()
            raise
        call = dataclasses.replace(
            call, request=dataclasses.replace(call.request, prompt=prepared.prompt)
        )
        pending = self._reserve(call, lease)
        pending.events.extend(prepared.events)
        return pending

    def _busy_say(self, call: IncomingCall, persona: Persona) -> str:
        return self.personal.say_text(persona.busy_message, call, persona, "busy")

    async def screen(self, call: NewCall) -> Screened | CallRefused:
        """Ask the toll-fraud guard (before any lease); a refusal is on record."""
        if self.guard is None:
            return Screened(call.call_sid, None)
        persona = call.persona
        decision = await self.guard.admit(call.party, call.call_sid)
        if isinstance(decision, Refused):
            log.warning(
                "toll-fraud guard refused a call %s %s: %s (%s)",
                "to" if call.direction == "outbound" else "from",
                mask_number(decision.caller),
                decision.reason.value,
                decision.detail,
                extra={"call_sid": call.call_sid, "persona": persona.id},
            )
            self.metrics.calls.labels("busy", CallEndReason.RATE_LIMITED.value).inc()
            self.metrics.calls_refused.labels(decision.reason.value).inc()
            detail = f"{decision.reason.value}: {decision.detail}"
            await self._journals.record_unanswered(
                _unanswered(call), persona, CallEndReason.RATE_LIMITED, detail
            )
            busy = self._busy_say(_incoming(call), persona)
            return CallRefused(CallEndReason.RATE_LIMITED, detail, busy, persona)
        return Screened(call.call_sid, decision.caller)

    def confirm_screened(self, screened: Screened) -> None:
        """The screened call is under way (it took a slot, or an outbound call rings):
        it counts against the guard's rates and concurrency."""
        if self.guard is not None and screened.caller is not None and not screened.confirmed:
            self.guard.confirm(screened.caller, screened.call_sid)
            screened.confirmed = True

    async def release_screened(self, screened: Screened) -> None:
        """A screened call that will take no lease gives its guard slot back: one never
        confirmed uses no quota; a confirmed one (it rang) keeps its count."""
        if self.guard is None or screened.caller is None:
            return
        if screened.confirmed:
            self.guard.release(screened.caller, screened.call_sid)
        else:
            await self.guard.cancel(screened.caller, screened.call_sid)

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
            variables=dict(call.variables),
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
                self.metrics.model_busy.labels(server_label(pending.lease.server_url)).inc()
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
            policy=self._policy_for(pending, leg),
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

    def add_policy(self, factory: PolicyFactory, *, first: bool = False) -> None:
        """Another feature that watches calls (outbound's opt-out beside the persona's
        transfer triggers); ``first``: it sees each key before the others."""
        if first:
            self._policies.insert(0, factory)
        else:
            self._policies.append(factory)

    def _policy_for(self, pending: PendingCall, leg: Leg) -> CallPolicy | None:
        made = [p for factory in self._policies if (p := factory(pending, leg)) is not None]
        if not made:
            return None
        return made[0] if len(made) == 1 else Policies(made)

    async def abandon(self, pending: PendingCall, reason: CallEndReason, detail: str) -> None:
        """A pending call whose leg will never come (the browser left before the model
        was ready): free its model socket and lease now, record it."""
        if self.pending.withdraw(pending.call_sid) is pending:
            await self._abandon(pending, reason, detail)

    async def after_stream(
        self, call_sid: str, to_number: str, other_number: str = "", carrier: str = "twilio"
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
            return self._fallback_for_unheld_call(call_sid, to_number, other_number, carrier)
        return self.decide(outcome)

    def decide(self, outcome: CallOutcome) -> AfterStream:
        """A transfer's hand-off; else the fallback if the call ended badly, a
        goodbye at a limit or an opt-out, else hang up."""
        if outcome.handoff is not None:
            # A transfer: the human's number, or the room where they wait.
            # Nothing after it (no timed verb can cut the caller off later).
            handoff = outcome.handoff
            return Join(handoff.to) if handoff.join else Transfer(handoff.to)
        persona = self._personas().by_id(outcome.persona_id)
        if persona is None:
            return Hangup()
        if self.after_call is not None and (answer := self.after_call(outcome, persona)):
            return answer
        if outcome.reason.wants_fallback:
            say = self.personal.fallback_say(outcome.call_sid, persona)
            return _fallback(persona, say)
        if outcome.reason in (
            CallEndReason.MAX_DURATION,
            CallEndReason.CALLER_SILENCE,
            CallEndReason.OPTED_OUT,
        ):
            return Say(GOODBYE, persona.tts_voice)
        return Hangup()

    def _fallback_for_unheld_call(
        self, call_sid: str, our_number: str, other_number: str, carrier: str
    ) -> AfterStream:
        """The action request of a call another (dead) replica held: the persona's fallback.

        Twilio asks the ``<Connect action>`` only when the stream ended without
        the caller hanging up, so a caller is still on the line; with no outcome
        anywhere, the replica holding the call died (the edge proxy sent its
        action here) or this one restarted. The persona comes from the dialled
        number in the carrier's signed request (``our_number``: the number dialled,
        or our caller ID for a call we placed), routed as the call webhook routed
        it (a number bound to ``carrier`` finds its persona; one bound to another
        carrier does not).
        """
        persona = self._personas().for_number(our_number, carrier)
        if persona is None:
            return Hangup()
        log.warning(
            "stream ended for a call this replica does not hold (its replica is gone); "
            "answering the persona's fallback",
            extra={"call_sid": call_sid, "persona": persona.id},
        )
        if call_sid and call_sid not in self._orphans:
            # On record even if its replica died before writing the row (in the
            # background: the caller is waiting for the fallback).
            self._orphans.add(call_sid)
            orphan = UnansweredCall(call_sid, other_number, our_number, carrier)
            task = asyncio.create_task(
                self._journals.record_orphan(orphan, persona), name=f"{call_sid}:orphan"
            )
            self._journals.background.add(task)
            task.add_done_callback(self._journals.background.discard)
        return _fallback(persona, self.personal.fallback_say(call_sid, persona))

    def pending_call(self, token: str) -> PendingCall | None:
        """The pending call ``token`` reserved, without claiming it (a socket's upgrade check)."""
        return self.pending.get(token)

    def still_pending(self, pending: PendingCall) -> bool:
        """``pending`` is still reserved and unclaimed (its caller did not hang up meanwhile)."""
        return self.pending.by_call_sid(pending.call_sid) is pending

    async def withdraw_pending(self, call_sid: str, reason: CallEndReason, detail: str) -> bool:
        """The pending call of ``call_sid`` will never be claimed (its caller hung up
        while it rang): free its model socket and lease now, record it. False if this
        process holds no such pending call (it is live, or another replica holds it)."""
        pending = self.pending.withdraw(call_sid)
        if pending is None:
            return False
        await self._abandon(pending, reason, detail)
        return True

    # -- a caller who hangs up while it rings --------------------------------------
    # The carrier's hang-up callback reaches one replica (a number has one status
    # callback); the pending call may be held by another. The replica that hears
    # it withdraws the call if it holds it, else tells every replica.

    async def ringing_ended(self, call_sid: str) -> None:
        """The carrier says ``call_sid`` ended (it may have been ringing): free its
        pending model socket here, or tell the replica that holds it."""
        if await self.withdraw_pending(
            call_sid, CallEndReason.CALLER_HANGUP, "caller hung up before the stream started"
        ):
            self.metrics.ringing_hangups.labels("local").inc()
            return
        await self.tell_replicas_ringing_ended(call_sid)

    async def tell_replicas_ringing_ended(self, call_sid: str) -> None:
        """Tell every replica ``call_sid`` ended while it rang, unless this process
        answered it (then no other replica holds it: it was claimed or freed here)."""
        if call_sid and call_sid not in self._held and call_sid not in self.live:
            await self.hangups.publish(call_sid)

    async def withdraw_signalled(self, call_sid: str) -> None:
        """Another replica heard ``call_sid`` hang up while it rang: free it if held here."""
        if await self.withdraw_pending(
            call_sid,
            CallEndReason.CALLER_HANGUP,
            "caller hung up before the stream started (heard by another replica)",
        ):
            self.metrics.ringing_hangups.labels("signalled").inc()

    async def listen_for_ringing_hangups(self) -> None:
        """The background subscriber: other replicas' ringing hang-ups, until cancelled."""
        await self.hangups.run_forever(self.withdraw_signalled)

    # -- a phone webhook's kept answer ---------------------------------------------
    # A webhook's stream answer is kept (shared by every replica when coordination
    # is in Redis) until the stream claims the call, so a retry that reaches another
    # replica gets the same answer and opens nothing.

    async def kept_answer(self, call_sid: str) -> str | None:
        """The answer document kept for ``call_sid`` by the replica holding it; None when
        this process holds the call pending (:meth:`answer_phone` returns it again) or
        no answer is kept."""
        if self.pending.by_call_sid(call_sid) is not None:
            return None
        return await self._answered.previous_answer(call_sid)

    async def keep_answer(self, call_sid: str, document: str) -> None:
        """Keep ``document``, the stream answer of ``call_sid``, until its stream claims it
        (at most the pending timeout)."""
        await self._answered.remember_answer(
            call_sid, document, ttl_seconds=self.config.pending_timeout
        )

    def forget_answer(self, call_sid: str) -> None:
        """The stream claimed ``call_sid``: a replayed webhook now hangs up."""
        self._answered.forget_answer(call_sid)

    # -- outbound calls (phonebridge/outbound/) ------------------------------------
    # A call we place is admitted by :meth:`admit` like one we receive (at dial
    # time or when answered, per persona) and answered on the same stream path
    # (Twilio's <Connect><Stream>): a reservation claimed by the media stream
    # with its one-time token.

    def hold_pending(self, pending: PendingCall, seconds: float) -> None:
        """Give a reservation ``seconds`` for its stream (a model opened at dial
        time waits for the ringing too)."""
        pending.deadline = max(pending.deadline, self._clock() + seconds)

    def bind_answered(self, pending: PendingCall, call_sid: str) -> bool:
        """An answered outbound call reserved by :meth:`admit`, now known by the
        carrier's ``call_sid``, gets a fresh deadline for its stream (the carrier's
        routes then start it); False if the reservation is gone."""
        if self.pending.by_call_sid(pending.call_sid) is not pending:
            return False
        if pending.call_sid != call_sid:
            # Reserved at dial time under a provisional SID; the stream brings the real one.
            self.pending.withdraw(pending.call_sid)
            pending.call_sid = call_sid
            self.pending.add(pending)
        pending.deadline = self._clock() + self.config.pending_timeout
        self._sweeper_wake.set()
        return True

    async def abandon_as(
        self, pending: PendingCall, call_sid: str, reason: CallEndReason, detail: str
    ) -> bool:
        """:meth:`abandon`, the row written under ``call_sid`` (the carrier's SID of a
        call reserved at dial time that was never answered); False if it was gone."""
        if self.pending.withdraw(pending.call_sid) is not pending:
            return False
        pending.call_sid = call_sid
        await self._abandon(pending, reason, detail)
        return True

    def end_live_call(self, call_sid: str, reason: CallEndReason, detail: str) -> bool:
        """End a live call (an answering machine was detected); False if not live here."""
        session = self.live.get(call_sid)
        if session is None:
            return False
        session.end(reason, detail)
        return True

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
        self._answered.forget_answer(call.call_sid)
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

        Calls ended by the drain close their stream, so the carrier asks what
        follows (Twilio's ``<Connect action>``) and the caller hears the persona's fallback
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


def _routed(call: NewCall, persona: Persona) -> NewCall:
    """``call`` taken by ``persona`` (the closed persona routes it): its prompt and
    voice, unless the entry chose its own for this call (a try-a-prompt override)."""
    request = call.request
    own = call.persona.session_request(request.sample_rate)
    if request == own:
        request = persona.session_request(request.sample_rate)
    return dataclasses.replace(call, persona=persona, request=request)


def _unanswered(call: NewCall) -> UnansweredCall:
    return UnansweredCall(
        call.call_sid, call.from_number, call.to_number, call.channel, call.placed_by
    )


def _incoming(call: NewCall) -> IncomingCall:
    """What the personal steps (hours, context lookup, templates) know of a call."""
    return IncomingCall(
        call_sid=call.call_sid,
        from_number=call.from_number,
        to_number=call.to_number,
        direction=call.direction,
        channel=call.channel,
        carrier=call.carrier,
        contact=call.variables,
    )


def _fallback(persona: Persona, say: str) -> AfterStream:
    """The persona's fallback; ``say`` is its ``fallback.say`` rendered for the call."""
    fallback = persona.fallback
    if fallback.transfer_to:
        return Transfer(fallback.transfer_to, say, persona.tts_voice)
    return Say(say, persona.tts_voice)
