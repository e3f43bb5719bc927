"""The transfer policy: a persona's ``transfer:`` section, applied to one call.

A :class:`~phonebridge.calls.policy.CallPolicy`: the session shows it the
caller's keys, the agent's text and the clock; it decides (with
:mod:`.triggers`) and hands over:

- **cold** — end the call with a :class:`~phonebridge.calls.outcome.Handoff`
  to ``to``: the model socket closes at once (as on every exit), the leg
  closes, and the carrier dials the human its own way (Twilio and SignalWire:
  the ``<Connect action>`` answers ``<Dial>``; Vonage: the ``disconnected``
  NCCO; Telnyx: a Call Control transfer; Plivo: a REST transfer to a
  ``<Dial>`` document) — every leg in :data:`COLD_CHANNELS`;
- **warm** (legs in :data:`WARM_CHANNELS`; elsewhere it falls back to cold)
  — hold the caller (the agent muted, the hold loop playing; the
  model session stays open so the call can come back to it), ring the human
  through a :class:`~.warm.HumanDialer`, whisper the summary, and only when
  the human accepts end the call with a hand-off that *joins* the human
  (the model socket closes at that moment: it is billed, so it is not kept in
  case the call comes back). Declined or unanswered: the caller hears the
  agent again, or the persona's fallback (``warm.on_no_answer``).

One hand-off per call: once a transfer started, further triggers are noted and
ignored. Each firing is a transcript event (``transfer_trigger``) and a metric.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final

from phonebridge.calls.leg import Leg
from phonebridge.calls.outcome import CallEndReason, CallOutcome, Handoff
from phonebridge.calls.pending import PendingCall
from phonebridge.calls.policy import CallControls, TransferFacts
from phonebridge.errors import PhonebridgeError
from phonebridge.metrics import BridgeMetrics
from phonebridge.personas.schema import Persona
from phonebridge.personas.transfer import KeyAction, Transfer, TransferMode

from .hold import hold_loop
from .summary import CallFacts, Utterances, whisper_text
from .triggers import Firing, KeypadTriggers, PhraseTrigger
from .warm import (
    CALLER_LEFT,
    DECLINED,
    TOO_LATE,
    DialRequest,
    Dismiss,
    HumanDialer,
    HumanPrompt,
    JoinCaller,
    TransferResult,
    WarmHandoff,
    WarmState,
    Whisper,
)

log = logging.getLogger(__name__)

MAX_DIGITS: Final = 32  # keys kept for the whisper
REPEAT_HINT: Final = "[The caller pressed a key to hear that again: repeat your last answer.]"
COLD_CHANNELS: Final = frozenset({"twilio", "telnyx", "plivo", "vonage", "signalwire"})
"""Legs whose carrier can dial the human after the stream (a cold transfer):
Twilio's and SignalWire's ``<Connect action>`` answers ``<Dial>``, Vonage's
``disconnected`` event a ``connect``, Telnyx a Call Control ``transfer``,
Plivo a REST transfer to a ``<Dial>`` document. Not Exotel: the socket's close
ends the Voicebot applet and the account's call flow goes on; nothing in the
call can be told to dial (no in-call REST, CARRIERS.md §5.5)."""
WARM_CHANNELS: Final = frozenset({"twilio"})
"""Legs that can also hand over warm: it needs the carrier's REST dialer for
the human's call and a conference to meet in (telephony/twilio/transfer.py).
A warm persona on a cold-only leg transfers cold (noted ``transfer_cold``)."""


class TransferPolicy:
    """One call's transfer triggers and hand-off; see the module docstring."""

    def __init__(
        self,
        *,
        persona: Persona,
        transfer: Transfer,
        call_id: str,
        caller: str,
        dialled: str,
        sample_rate: int,
        metrics: BridgeMetrics,
        dialer: HumanDialer | None,
        can_hand_off: bool,
        can_warm: bool,
    ) -> None:
        self._persona = persona
        self._transfer = transfer
        self._call_id = call_id
        self._caller = caller
        self._dialled = dialled
        self._rate = sample_rate
        self._metrics = metrics
        self._dialer = dialer
        self._can_hand_off = can_hand_off
        self._can_warm = can_hand_off and can_warm and dialer is not None
        self._keypad = KeypadTriggers(transfer.keys)
        self._phrases: list[PhraseTrigger] = []
        if transfer.agent_phrases is not None:
            self._phrases.append(
                PhraseTrigger(
                    transfer.agent_phrases.patterns,
                    confirm_seconds=transfer.agent_phrases.confirm_seconds,
                    trigger="agent_phrase",
                )
            )
        if transfer.caller_phrases is not None:
            self._phrases.append(
                PhraseTrigger(
                    transfer.caller_phrases.patterns, confirm_seconds=0.0, trigger="caller_phrase"
                )
            )
        self._caller_phrases = self._phrases[-1] if transfer.caller_phrases is not None else None
        self._agent_phrases = self._phrases[0] if transfer.agent_phrases is not None else None
        self._utterances = Utterances()
        self._digits = ""
        self._call: CallControls | None = None
        self._handing_over = False
        self._warm: WarmHandoff | None = None
        self._human_id: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def room(self) -> str:
        """Where an accepting human waits for the caller (warm)."""
        return f"pb-{self._call_id}"

    # -- CallPolicy ------------------------------------------------------------------

    def start(self, call: CallControls) -> None:
        self._call = call

    async def key(self, digit: str, at: float) -> bool:
        self._digits = (self._digits + digit)[-MAX_DIGITS:]
        firing = self._keypad.key(digit, at)
        if firing is None:
            return False
        if firing.action is KeyAction.TRANSFER and not self._can_hand_off:
            self._note("transfer_unavailable", f"{firing.detail}: this leg cannot hand over")
            return False  # the model hears the key as before
        await self._fire(firing)
        return True

    def agent_text(self, piece: str, at: float) -> None:
        self._utterances.add(piece, at)
        if self._agent_phrases is not None:
            self._agent_phrases.text(piece, at)

    def caller_text(self, text: str, at: float) -> None:
        if self._caller_phrases is not None:
            self._caller_phrases.text(" " + text, at)

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (t.next_deadline() for t in self._phrases) if d is not None]
        if self._warm is not None:
            warm = self._warm.next_deadline()
            if warm is not None:
                deadlines.append(warm)
        return min(deadlines, default=None)

    def poll(self, now: float) -> None:
        for trigger in self._phrases:
            firing = trigger.poll(now)
            if firing is not None:
                self._spawn(self._fire(firing))
        if self._warm is not None:
            ringing = self._warm.state is WarmState.DIALLING
            result = self._warm.poll(now)
            if result is not None:
                self._settle(result, "no answer in time", hang_up=True, ringing=ringing)

    async def close(self, outcome: CallOutcome) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        warm = self._warm
        if warm is not None and warm.result is None:
            ringing = warm.state is WarmState.DIALLING
            result = warm.caller_gone()
            if result is not None:
                self._settle(result, outcome.reason.value, hang_up=True, ringing=ringing)

    # -- firing ------------------------------------------------------------------------

    async def _fire(self, firing: Firing) -> None:
        call = self._controls()
        self._metrics.transfer_triggers.labels(firing.trigger, firing.action.value).inc()
        self._note("transfer_trigger", f"{firing.trigger}: {firing.detail} -> {firing.action}")
        match firing.action:
            case KeyAction.TRANSFER:
                if self._handing_over:
                    self._note("transfer_ignored", "a hand-off already started on this call")
                    return
                if not self._can_hand_off:
                    self._note("transfer_unavailable", "this leg cannot hand over")
                    return
                self._handing_over = True
                for trigger in self._phrases:
                    trigger.disarm()
                if self._transfer.mode is TransferMode.WARM and self._can_warm:
                    self._start_warm()
                else:
                    if self._transfer.mode is TransferMode.WARM:
                        # Better a cold transfer than none: the caller asked for a human.
                        why = (
                            "no call control configured"
                            if self._dialer is None
                            else "this leg cannot hand over warm"
                        )
                        self._note("transfer_cold", f"{why}: cold transfer")
                    self._cold(firing)
            case KeyAction.OPT_OUT:
                call.end(CallEndReason.OPTED_OUT, firing.detail)
            case KeyAction.REPEAT:
                if not await call.tell_model(REPEAT_HINT):
                    self._note("repeat_unavailable", "the provider takes no text")

    def _cold(self, firing: Firing) -> None:
        to = self._target()
        call = self._controls()
        call.record_transfer(TransferFacts(to, "cold", TransferResult.DIALLED.value))
        self._metrics.transfers.labels("cold", TransferResult.DIALLED.value).inc()
        call.end(CallEndReason.TRANSFERRED, f"cold transfer ({firing.trigger})", Handoff(to))

    # -- warm -----------------------------------------------------------------------------

    def _start_warm(self) -> None:
        call = self._controls()
        warm_options = self._transfer.warm
        self._warm = WarmHandoff(
            now=call.now(),
            ring_seconds=warm_options.ring_seconds,
            accept_seconds=warm_options.accept_seconds,
            accept_key=warm_options.accept_key,
        )
        to = self._target()
        call.record_transfer(TransferFacts(to, "warm", "ringing"))
        wav = warm_options.hold_audio
        call.hold(hold_loop(None if wav is None else self._persona.source.parent / wav, self._rate))
        self._note("transfer_ringing", f"warm transfer: ringing {to}")
        self._spawn(self._dial(to))

    async def _dial(self, to: str) -> None:
        assert self._dialer is not None
        assert self._warm is not None
        request = DialRequest(
            to=to,
            from_number=self._dialled,
            caller_call_id=self._call_id,
            ring_seconds=self._transfer.warm.ring_seconds,
        )
        try:
            self._human_id = await self._dialer.dial(request, self)
        except PhonebridgeError as exc:
            log.warning("warm transfer: dial refused: %s", exc, extra={"call_sid": self._call_id})
            result = self._warm.dial_failed()
            if result is not None:
                self._settle(result, str(exc), hang_up=False, ringing=False)

    def human_answered(self) -> HumanPrompt:
        warm = self._warm
        if warm is None or not warm.answered(self._controls().now()):
            return self._late()
        self._note("transfer_answered", "the human answered; whispering the summary")
        facts = CallFacts(
            persona=self._persona.name,
            caller=self._caller,
            agent=self._utterances.last(),
            digits=self._digits,
        )
        options = self._transfer.warm
        text = whisper_text(options.whisper, facts, options.accept_key)
        return Whisper(
            text=text,
            timeout=options.accept_seconds,
            voice=self._persona.tts_voice,
            language=self._persona.tts_language,
        )

    def human_pressed(self, digits: str) -> HumanPrompt:
        warm = self._warm
        result = None if warm is None else warm.key(digits)
        if result is None:
            return self._late()
        detail = f"key {digits}" if digits else "no key pressed"
        self._settle(result, detail, hang_up=False, ringing=False)
        if result is TransferResult.ACCEPTED:
            return JoinCaller(self.room)
        return Dismiss(DECLINED)

    def human_ended(self, status: str) -> None:
        warm = self._warm
        result = None if warm is None else warm.human_ended(status)
        if result is not None:
            self._settle(result, f"human's call {status}", hang_up=False, ringing=False)

    def _late(self) -> Dismiss:
        warm = self._warm
        if warm is not None and warm.result is TransferResult.ABANDONED:
            return Dismiss(CALLER_LEFT)
        return Dismiss(TOO_LATE)

    def _settle(self, result: TransferResult, detail: str, *, hang_up: bool, ringing: bool) -> None:
        """The warm hand-off ended with ``result`` (exactly once: WarmHandoff says so)."""
        call = self._controls()
        to = self._target()
        call.record_transfer(TransferFacts(to, "warm", result.value))
        self._metrics.transfers.labels("warm", result.value).inc()
        self._note(f"transfer_{result.value}", detail)
        if hang_up and self._human_id is not None and self._dialer is not None:
            self._dialer.hang_up(self._human_id, ringing=ringing)
        match result:
            case TransferResult.ACCEPTED:
                # The model socket closes now (the session's teardown, first thing).
                call.end(
                    CallEndReason.TRANSFERRED,
                    "warm transfer accepted",
                    Handoff(self.room, join=True),
                )
            case TransferResult.ABANDONED:
                pass  # the call has ended already
            case _ if self._transfer.warm.on_no_answer == "fallback":
                call.end(CallEndReason.TRANSFER_FAILED, f"warm transfer {result.value}")
            case _:
                call.resume()
                self._note("transfer_returned", "back to the persona")

    # -- helpers -------------------------------------------------------------------------

    def _controls(self) -> CallControls:
        assert self._call is not None, "start() first"
        return self._call

    def _target(self) -> str:
        assert self._transfer.to is not None  # the schema requires it for any trigger
        return self._transfer.to

    def _note(self, kind: str, detail: str) -> None:
        if self._call is not None:
            self._call.note(kind, detail)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"{self._call_id}:transfer")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class TransferPolicies:
    """Makes each call's :class:`TransferPolicy` (the bridge's per-call policy factory)."""

    def __init__(
        self,
        *,
        metrics: BridgeMetrics,
        dialer: HumanDialer | None,
        cold_channels: frozenset[str] = COLD_CHANNELS,
        warm_channels: frozenset[str] = WARM_CHANNELS,
    ) -> None:
        self._metrics = metrics
        self._dialer = dialer
        self._cold_channels = cold_channels
        self._warm_channels = warm_channels

    def __call__(self, pending: PendingCall, leg: Leg) -> TransferPolicy | None:
        transfer = pending.persona.transfer
        if transfer is None:
            return None
        return TransferPolicy(
            persona=pending.persona,
            transfer=transfer,
            call_id=pending.call_sid,
            caller=pending.from_number,
            dialled=pending.to_number,
            sample_rate=leg.sample_rate,
            metrics=self._metrics,
            dialer=self._dialer,
            can_hand_off=leg.channel in self._cold_channels,
            can_warm=leg.channel in self._warm_channels,
        )


PolicyFactory = Callable[[PendingCall, Leg], "TransferPolicy | None"]
