"""Placing outbound calls and following them to their outcome.

One call's life (docs/outbound.md):

1. **Checks** (:meth:`Outbound.place`): outbound enabled, persona exists, the
   number is E.164 in an allowed country, the caller ID is allowed, the
   number is not on the do-not-call list, the toll-fraud guard's per-number
   and per-minute limits, a free model slot. Any refusal happens before the
   carrier is asked: no REST request, no cost.
2. **Claim, then dial**: the attempt row is written (``claimed``) before the
   REST request, and gets the carrier's call SID after it. The call is a
   :class:`~phonebridge.calls.bridge.NewCall` (``direction="outbound"``,
   ``placed_by`` the operator or ``campaign:<id>``) admitted by
   :meth:`Bridge.admit`, the one path every call takes (toll-fraud guard,
   lease, model session opening): a persona that opens the model *at dial
   time* is admitted now, under a provisional SID; one that opens it *at
   answer* is only screened by the guard now (a refusal rings nobody) and
   admitted when answered. The guard counts the number we ring.
3. **Answer** (``{sticky}/outbound/answer``): the same ``<Connect><Stream>``
   path as an inbound call (:meth:`Bridge.connect`).
4. **Status callbacks**: no-answer, busy, failed and canceled become call
   rows with that outcome; completed ends the attempt.
5. **Answering machines** (the carrier's detection): end the live call
   with ``voicemail`` (what runs after the stream then says the persona's
   message after the beep) or ``machine_hangup``.
6. **Opt-out**: the persona's opt-out digit adds the callee to the DNC list
   and ends the call; the callee then hears the polite goodbye.

Carriers: the service speaks the carrier-neutral words of
:mod:`phonebridge.outbound.carrier` (:data:`CallStatus`, :data:`MachineVerdict`);
each carrier's dialer (``telephony/<carrier>/dialer.py``) and callback routes
translate into them, and each carrier's routes render what the answered call
runs (a document, or Call Control commands). A persona bound to a carrier
(``carrier:``) dials through it; any other through ``PHONEBRIDGE_OUTBOUND_CARRIER``
(Twilio by default). A carrier that cannot dial out is refused (503) before
anything is claimed. The attempt records its carrier, so its callbacks and
its recovery go to the carrier that dialled it.

Recovery (:meth:`Outbound.reconcile`): an attempt left ``claimed`` without a
call SID (a crash between claim and REST answer) is resolved by finding the
call at the carrier (to, from, since the claim): found, it is adopted;
not found, nobody was dialled and the claim is released. Attempts with a SID
are fetched and settled from the carrier's status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import NoReturn

from phonebridge.calls.bridge import (
    AfterStream,
    Bridge,
    CallRefused,
    Hangup,
    NewCall,
    Say,
    Screened,
)
from phonebridge.calls.guard import mask_number
from phonebridge.calls.journal import JournalFactory, UnansweredCall
from phonebridge.calls.leg import Leg
from phonebridge.calls.outcome import CallEndReason, CallOutcome
from phonebridge.calls.pending import PendingCall
from phonebridge.errors import PhonebridgeError, StorageError
from phonebridge.outbound.carrier import (
    TERMINAL_STATUSES,
    CallStatus,
    CarrierCall,
    CarrierError,
    DialRequest,
    MachineVerdict,
    OutboundCarrier,
)
from phonebridge.outbound.numbers import NumberRefused, normalize
from phonebridge.outbound.opt_out import OptOutPolicy
from phonebridge.outbound.store import Attempt, OutboundStore
from phonebridge.personas.book import PersonaBook
from phonebridge.personas.schema import Persona

log = logging.getLogger(__name__)

WallClock = Callable[[], datetime]

# An unanswered call's status -> the attempt's outcome and the call row's end reason.
_UNANSWERED: dict[CallStatus, tuple[str, CallEndReason]] = {
    "no-answer": ("no_answer", CallEndReason.NO_ANSWER),
    "busy": ("busy", CallEndReason.LINE_BUSY),
    "failed": ("failed", CallEndReason.DIAL_FAILED),
    "canceled": ("canceled", CallEndReason.CANCELED),
}
CLAIM_GRACE_SECONDS = 30.0
"""An attempt claimed this long ago without a call SID, and not in flight here,
belongs to a process that died between claim and REST answer (the REST request
itself times out well within it)."""


class OutboundError(PhonebridgeError):
    """A call that will not be placed; ``status`` is the HTTP status the API answers."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class OutboundConfig:
    enabled: bool
    countries: tuple[int, ...]
    caller_ids: tuple[str, ...]
    ring_seconds: int
    pending_timeout: float
    callback_url: Callable[[str, str], str]
    """(kind, attempt id) -> the public URL the carrier is given: kind is answer, status
    or amd (Twilio), or ``<carrier>/<kind>`` (the others, whose dialers choose the kinds)."""
    max_calls: int = 50  # PHONEBRIDGE_MAX_CALLS: the instance's cap
    replica: str = ""
    """This replica's id (settings.effective_replica_id; "" for one process): stamped
    on the attempts it claims, so at start-up it resolves only its own claims at once."""
    dnc_file: Path | None = None
    carrier: str = "twilio"
    """PHONEBRIDGE_OUTBOUND_CARRIER: dials the calls of personas not bound to a carrier."""


@dataclass(frozen=True, slots=True)
class CallRequest:
    to: str
    persona: str
    placed_by: str
    from_: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _LiveOutbound:
    attempt_id: str
    to_number: str
    persona: Persona


class Outbound:
    """The outbound side of one bridge process."""

    def __init__(
        self,
        *,
        config: OutboundConfig,
        bridge: Bridge,
        personas: Callable[[], PersonaBook],
        store: OutboundStore,
        carriers: Mapping[str, OutboundCarrier],
        journals: JournalFactory,
        wall_clock: WallClock,
    ) -> None:
        self.config = config
        self._bridge = bridge
        self._personas = personas
        self.store = store
        self._carriers = dict(carriers)
        self._journals = journals
        self._wall = wall_clock
        self._early: dict[str, PendingCall] = {}  # attempt id -> admitted at dial time
        # attempt id -> screened by the guard at dial time, admitted when answered
        # (a persona that opens the model at answer): ringing, no lease yet.
        self._screened: dict[str, Screened] = {}
        self._calls: dict[str, _LiveOutbound] = {}  # call SID -> answered outbound call
        self._opted_out: set[str] = set()  # call SIDs whose callee pressed the opt-out digit
        self._in_flight: set[str] = set()  # attempts whose REST request is running here
        self._tasks: set[asyncio.Task[None]] = set()
        self._dnc_file_cache: tuple[float, frozenset[str]] | None = None
        self.settled = asyncio.Event()
        """Set whenever an attempt ends: the campaign runner looks for the next contact."""
        bridge.add_policy(self._opt_out_policy, first=True)
        bridge.after_call = self._after_call

    # -- checks ---------------------------------------------------------------

    def personas(self) -> PersonaBook:
        return self._personas()

    def persona(self, persona_id: str) -> Persona:
        persona = self._personas().by_id(persona_id)
        if persona is None:
            raise OutboundError(f"no persona {persona_id!r}", 404)
        return persona

    def _require_enabled(self) -> None:
        if not self.config.enabled:
            raise OutboundError(
                "outbound calls are disabled (set PHONEBRIDGE_OUTBOUND_ENABLED=1)", 403
            )

    def carrier_name(self, persona: Persona | None) -> str:
        """The carrier ``persona``'s calls go out through: its binding, else the setting."""
        if persona is not None and persona.carrier is not None:
            return persona.carrier
        return self.config.carrier

    def carrier_for(self, persona: Persona) -> OutboundCarrier:
        name = self.carrier_name(persona)
        found = self._carriers.get(name)
        if found is None:
            raise OutboundError(f"no carrier is configured for outbound calls on {name}", 503)
        if persona.outbound.on_machine == "voicemail" and not found.dialer.leaves_voicemail:
            raise OutboundError(
                f"persona {persona.id!r} leaves voicemail (on_machine: voicemail), which "
                f"{found.dialer.label} cannot: it detects no answering machines",
                409,
            )
        return found

    def _carrier_of(self, attempt: Attempt) -> OutboundCarrier | None:
        """The carrier an attempt was dialled through (recorded since revision 0009;
        before it, its persona's as it is now)."""
        if attempt.carrier is not None:
            return self._carriers.get(attempt.carrier)
        return self._carriers.get(self.carrier_name(self._personas().by_id(attempt.persona)))

    def check_number(self, number: str) -> str:
        try:
            return normalize(number, self.config.countries)
        except NumberRefused as exc:
            raise OutboundError(str(exc), 400) from exc

    def check_caller_id(self, from_: str | None) -> str:
        if from_ is None:
            return self.config.caller_ids[0]
        if from_ not in self.config.caller_ids:
            raise OutboundError(
                f"caller ID {from_!r} is not allowed (PHONEBRIDGE_OUTBOUND_CALLER_IDS)", 400
            )
        return from_

    async def is_dnc(self, number: str) -> bool:
        return number in self._dnc_from_file() or await self.store.is_dnc(number)

    def _dnc_from_file(self) -> frozenset[str]:
        path = self.config.dnc_file
        if path is None:
            return frozenset()
        try:
            mtime = path.stat().st_mtime
        except OSError:
            log.error("do-not-call file %s is unreadable: refusing to dial", path)
            raise OutboundError("the do-not-call file cannot be read", 503) from None
        if self._dnc_file_cache is None or self._dnc_file_cache[0] != mtime:
            numbers = {
                line.split("#", 1)[0].strip()
                for line in path.read_text(encoding="utf-8").splitlines()
            }
            self._dnc_file_cache = (mtime, frozenset(n for n in numbers if n))
        return self._dnc_file_cache[1]

    def free_capacity(self, persona: Persona) -> int:
        """Model slots free now for ``persona``, less the calls still ringing that
        will want one at answer."""
        admission = self._bridge.admission
        if admission.draining:
            return 0
        free = self.config.max_calls - admission.active_calls
        if persona.provider == "personaplex" and persona.overflow is None:
            free = min(free, admission.pool.free_count())
        return max(0, free - len(self._screened))

    # -- placing ----------------------------------------------------------------

    async def place(self, request: CallRequest) -> Attempt:
        """Check, claim and dial one call (operator: API, CLI, dashboard)."""
        self._require_enabled()
        persona = self.persona(request.persona)
        carrier = self.carrier_for(persona)  # none that dials out: refused before the claim
        to = self.check_number(request.to)
        from_ = self.check_caller_id(request.from_)
        if await self.is_dnc(to):
            raise OutboundError(f"{to} is on the do-not-call list", 409)
        if self.free_capacity(persona) <= 0:
            raise OutboundError("no free model capacity for another call now", 503)
        attempt = await self.store.add_attempt(
            to_number=to,
            from_number=from_,
            persona=persona.id,
            placed_by=request.placed_by,
            variables=request.variables,
            now=self._wall(),
            replica=self.config.replica,
            carrier=carrier.name,
        )
        return await self.dial(attempt, persona)

    async def dial(self, attempt: Attempt, persona: Persona) -> Attempt:
        """Send a claimed attempt to the carrier; raises :class:`OutboundError` if refused."""
        self._require_enabled()
        try:
            carrier = self.carrier_for(persona)
        except OutboundError as exc:
            await self.store.release_claim(attempt.id, self._wall(), str(exc))
            raise
        call = self._new_call(attempt, persona, f"OUT-{attempt.id}", carrier)
        self._in_flight.add(attempt.id)
        try:
            screened: Screened | None = None
            if persona.outbound.open_model == "dial":
                admitted = await self._bridge.admit(call)
                if isinstance(admitted, CallRefused):
                    await self._refused(attempt, admitted)
                else:
                    self._bridge.hold_pending(
                        admitted, self.config.ring_seconds + self.config.pending_timeout
                    )
                    self._early[attempt.id] = admitted
            else:
                passed = await self._bridge.screen(call)
                if isinstance(passed, CallRefused):
                    await self._refused(attempt, passed)
                else:
                    screened = self._screened[attempt.id] = passed
            try:
                placed = await carrier.dialer.place(self._dial_request(attempt, persona, carrier))
            except CarrierError as exc:
                await self._placing_failed(attempt, exc)
                raise OutboundError(f"the carrier refused the call: {exc}", 502) from exc
            if screened is not None and self._screened.get(attempt.id) is screened:
                self._bridge.confirm_screened(screened)  # it rings: it counts
            await self.store.set_dialing(attempt.id, placed.sid, self._wall())
        finally:
            self._in_flight.discard(attempt.id)
        found = await self.store.attempt(attempt.id)
        assert found is not None
        log.info(
            "outbound call %s to %s placed by %s",
            placed.sid,
            mask_number(attempt.to_number),
            attempt.placed_by,
            extra={"call_sid": placed.sid, "persona": persona.id},
        )
        return found

    def _new_call(
        self,
        attempt: Attempt,
        persona: Persona,
        call_sid: str,
        carrier: OutboundCarrier,
        account_sid: str = "",
    ) -> NewCall:
        return NewCall(
            call_sid=call_sid,
            account_sid=account_sid,
            from_number=attempt.from_number,
            to_number=attempt.to_number,
            persona=persona,
            request=(
                persona.session_request(carrier.rate)
                if carrier.rate is not None
                else persona.session_request()
            ),
            channel=carrier.name,
            placed_by=attempt.placed_by,
            direction="outbound",
            variables=attempt.variables,
        )

    async def _refused(self, attempt: Attempt, refused: CallRefused) -> NoReturn:
        """The guard or the capacity said no before anyone was rung: release the claim."""
        await self.store.release_claim(attempt.id, self._wall(), refused.detail)
        if refused.reason is CallEndReason.RATE_LIMITED:
            raise OutboundError(
                f"rate limit for {mask_number(attempt.to_number)}: {refused.detail}", 429
            )
        raise OutboundError(f"no free model capacity: {refused.detail}", 503)

    def _dial_request(
        self, attempt: Attempt, persona: Persona, carrier: OutboundCarrier
    ) -> DialRequest:
        def url(kind: str) -> str:
            path = kind if carrier.name == "twilio" else f"{carrier.name}/{kind}"
            return self.config.callback_url(path, attempt.id)

        return DialRequest(
            attempt_id=attempt.id,
            to=attempt.to_number,
            from_=attempt.from_number,
            callback_url=url,
            ring_seconds=self.config.ring_seconds,
            machine=persona.outbound.on_machine,
            sample_rate=persona.session_request(carrier.rate).sample_rate
            if carrier.rate is not None
            else persona.session_request().sample_rate,
        )

    async def _placing_failed(self, attempt: Attempt, exc: CarrierError) -> None:
        early = self._early.pop(attempt.id, None)
        if early is not None:
            await self._bridge.abandon(early, CallEndReason.DIAL_FAILED, str(exc))
        screened = self._screened.pop(attempt.id, None)
        if screened is not None:
            if not exc.definitely_not_placed:
                self._bridge.confirm_screened(screened)  # it may have rung: count it
            await self._bridge.release_screened(screened)
        if exc.definitely_not_placed:
            await self.store.release_claim(attempt.id, self._wall(), str(exc))
        # Otherwise the call may exist: the claim stays for reconcile() to look up.

    # -- the carrier's callbacks, in the carrier-neutral words ---------------------

    async def answered(
        self, attempt_id: str, carrier: str, carrier_call_id: str, account: str = ""
    ) -> PendingCall | None:
        """The callee answered: the reserved call whose stream the carrier's routes
        now start (a ``<Connect><Stream>`` document, or a Call Control command),
        exactly as for an inbound call; None: hang up (on record when refused)."""
        attempt = await self.store.attempt(attempt_id)
        link = self._carriers.get(carrier)
        if attempt is None or link is None or not carrier_call_id:
            return None
        call_sid = link.call_sid(carrier_call_id)
        retry = self._bridge.pending.by_call_sid(call_sid)
        if retry is not None:
            # The carrier retried its answer request: the same stream, nothing new opened.
            return retry if self._bridge.bind_answered(retry, call_sid) else None
        persona = self._personas().by_id(attempt.persona)
        if persona is None:
            return None
        await self.store.set_answered(attempt_id, self._wall())
        self._calls[call_sid] = _LiveOutbound(attempt_id, attempt.to_number, persona)
        early = self._early.pop(attempt_id, None)
        if early is not None and self._bridge.bind_answered(early, call_sid):
            return early
        # Opened at answer (or the dial-time reservation is gone): admitted now,
        # on the guard's verdict from dial time when this replica dialled it.
        admitted = await self._bridge.admit(
            self._new_call(attempt, persona, call_sid, link, account),
            self._screened.pop(attempt_id, None),
        )
        if isinstance(admitted, CallRefused):
            return None  # on record (busy); the callee is not kept waiting
        return admitted if self._bridge.bind_answered(admitted, call_sid) else None

    async def status(
        self, attempt_id: str, carrier: str, carrier_call_id: str, status: CallStatus
    ) -> None:
        """The call's progress: the terminal statuses settle the attempt and its row."""
        attempt = await self.store.attempt(attempt_id)
        link = self._carriers.get(carrier)
        if attempt is None or link is None or not carrier_call_id:
            return
        await self._settle(
            attempt,
            CarrierCall(carrier_call_id, status, attempt.to_number, attempt.from_number),
            link,
        )

    async def _settle(self, attempt: Attempt, call: CarrierCall, link: OutboundCarrier) -> None:
        """``call.sid`` is the carrier's id (kept on the attempt, for its REST API);
        the call row and the live call go by our SID for it."""
        sid = link.call_sid(call.sid)
        if call.status == "in-progress":
            await self.store.set_answered(attempt.id, self._wall())
            return
        if call.status not in TERMINAL_STATUSES:
            return
        screened = self._screened.pop(attempt.id, None)
        if screened is not None:
            await self._bridge.release_screened(screened)  # it rang and was never answered
        self._calls.pop(sid, None)
        self.settled.set()
        now = self._wall()
        if call.status == "completed":
            # The opt-out's own write may still be queued behind this one.
            outcome = "opted_out" if sid in self._opted_out else "answered"
            self._opted_out.discard(sid)
            await self.store.finish_attempt(attempt.id, outcome, now, call_sid=call.sid)
            return
        outcome, reason = _UNANSWERED[call.status]
        if not await self.store.finish_attempt(attempt.id, outcome, now, call_sid=call.sid):
            return  # settled already (a repeated callback, or reconcile got there first)
        early = self._early.pop(attempt.id, None)
        detail = f"{link.dialer.label}: {call.status}"
        if early is None or not await self._bridge.abandon_as(early, sid, reason, detail):
            persona = self._personas().by_id(attempt.persona)
            if persona is not None:
                await self._journals.record_unanswered(
                    UnansweredCall(
                        sid,
                        attempt.from_number,
                        attempt.to_number,
                        channel=link.name,
                        placed_by=attempt.placed_by,
                    ),
                    persona,
                    reason,
                    detail,
                )

    async def machine(
        self,
        attempt_id: str,
        carrier: str,
        carrier_call_id: str,
        verdict: MachineVerdict,
        answered_by: str,
    ) -> None:
        """The answering-machine verdict (``answered_by``: the carrier's own word, kept
        on the attempt): on a machine, voicemail or hang up, per persona."""
        attempt = await self.store.attempt(attempt_id)
        link = self._carriers.get(carrier)
        if attempt is None or link is None or not carrier_call_id:
            return
        call_sid = link.call_sid(carrier_call_id)
        await self.store.set_answered_by(attempt_id, answered_by[:32], self._wall())
        if verdict not in ("machine", "message_end"):
            return
        persona = self._personas().by_id(attempt.persona)
        if persona is None:
            return
        if persona.outbound.on_machine == "voicemail":
            if verdict != "message_end":
                return  # the beep has not passed yet; the carrier tells us again when it has
            await self.store.set_outcome_hint(attempt_id, "voicemail", self._wall())
            ended = self._bridge.end_live_call(
                call_sid, CallEndReason.VOICEMAIL, f"answered by {answered_by}"
            )
        else:
            await self.store.set_outcome_hint(attempt_id, "machine_hangup", self._wall())
            ended = self._bridge.end_live_call(
                call_sid, CallEndReason.MACHINE_HANGUP, f"answered by {answered_by}"
            )
        if not ended:
            # No stream here to end (it never started): hang up through the REST API.
            await link.dialer.hang_up(carrier_call_id)

    def _after_call(self, outcome: CallOutcome, persona: Persona) -> AfterStream | None:
        """What the carrier does after an outbound call's stream: voicemail, goodbye, hang up."""
        voice = persona.tts_voice
        if outcome.reason is CallEndReason.VOICEMAIL and persona.outbound.voicemail:
            return Say(persona.outbound.voicemail, voice)
        if outcome.reason is CallEndReason.OPTED_OUT:
            return Say(persona.outbound.opt_out_message, voice)
        if outcome.reason is CallEndReason.MACHINE_HANGUP:
            return Hangup()
        return None

    def _opt_out_policy(self, pending: PendingCall, leg: Leg) -> OptOutPolicy | None:
        """An answered outbound call's opt-out watch (None for every other call)."""
        call = self._calls.get(pending.call_sid)
        digit = call.persona.outbound.opt_out_digit if call is not None else None
        if call is None or digit is None:
            return None  # not ours, or a persona without an opt-out digit
        sid = pending.call_sid

        def opted_out() -> None:
            self._opted_out.add(sid)
            task = asyncio.create_task(self._opt_out(call))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return OptOutPolicy(digit, opted_out)

    async def _opt_out(self, call: _LiveOutbound) -> None:
        now = self._wall()
        try:
            await self.store.add_dnc(call.to_number, "opt_out", now, note=call.attempt_id)
            await self.store.set_outcome_hint(call.attempt_id, "opted_out", now)
        except StorageError as exc:
            log.error("opt-out of %s not recorded: %s", mask_number(call.to_number), exc)

    # -- recovery -----------------------------------------------------------------

    async def reconcile(self, *, at_start: bool = False) -> int:
        """Settle attempts left open by a crash (or by a lost callback). Returns how many
        were settled or adopted.

        A claim without a call SID is looked up at the carrier once it is
        :data:`CLAIM_GRACE_SECONDS` old (its REST request has long timed out);
        ``at_start``, this replica's own claims at once (nothing of its own is
        in flight), never another live replica's, whose request may be running.
        """
        if not self._carriers:
            return 0
        settled = 0
        now = self._wall()
        grace = timedelta(seconds=CLAIM_GRACE_SECONDS)
        for attempt in await self.store.attempts_for(states=("claimed", "dialing", "answered")):
            if attempt.id in self._in_flight:
                continue
            link = self._carrier_of(attempt)
            if link is None:
                continue  # its carrier is not configured here (any more)
            try:
                if attempt.call_sid is None:
                    own = at_start and attempt.replica == self.config.replica
                    if not own and now - attempt.created_at < grace:
                        continue
                    settled += await self._resolve_claim(attempt, link)
                    continue
                call = await link.dialer.fetch(attempt.call_sid)
                if call is None:
                    await self.store.finish_attempt(attempt.id, "failed", now, error="not found")
                    settled += 1
                elif call.status in TERMINAL_STATUSES:
                    await self._settle(attempt, call, link)
                    settled += 1
            except (CarrierError, StorageError) as exc:
                log.warning("reconcile of attempt %s failed: %s", attempt.id, exc)
        return settled

    async def _resolve_claim(self, attempt: Attempt, link: OutboundCarrier) -> int:
        since = attempt.created_at - timedelta(minutes=1)
        candidates = await link.dialer.find(
            attempt_id=attempt.id, to=attempt.to_number, from_=attempt.from_number, since=since
        )
        for call in candidates:
            if await self.store.attempt_by_sid(call.sid) is None:
                log.warning("claimed attempt %s adopted its call %s", attempt.id, call.sid)
                await self.store.set_dialing(attempt.id, call.sid, self._wall())
                refreshed = await self.store.attempt(attempt.id)
                if refreshed is not None:
                    await self._settle(refreshed, call, link)
                return 1
        log.warning("claimed attempt %s never reached the carrier: released", attempt.id)
        await self.store.release_claim(attempt.id, self._wall(), "no call found after a crash")
        return 1
