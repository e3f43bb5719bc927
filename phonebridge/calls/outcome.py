"""How a call ended, and what Twilio should do next.

When the bridge ends a call itself (the model failed, a limit was reached),
it closes the media stream so that Twilio requests the ``<Connect action>``
URL (PROTOCOLS.md §1.1); that request is answered from the outcome recorded
here. Outcomes are kept for a few minutes only: Twilio asks right away.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum


class CallEndReason(StrEnum):
    """Why a call ended, as stored on its call record."""

    CALLER_HANGUP = "caller_hangup"  # Twilio sent `stop`
    CALLER_DROPPED = "caller_dropped"  # the media socket closed without `stop`
    MODEL_FAILED = "model_failed"  # the model session could not be opened
    MODEL_ENDED = "model_ended"  # the model session died mid-call
    MODEL_STALLED = "model_stalled"  # the model socket stayed open but produced nothing
    MAX_DURATION = "max_duration"  # the persona's max call length was reached
    CALLER_SILENCE = "caller_silence"  # the caller said nothing for too long
    DRAIN = "drain"  # the bridge is shutting down
    PROTOCOL_ERROR = "protocol_error"  # Twilio's stream broke the protocol
    BRIDGE_ERROR = "bridge_error"  # a bug on our side; logged with a traceback
    BUSY = "busy"  # no slot: the caller heard the busy message
    RATE_LIMITED = "rate_limited"  # the toll-fraud guard refused it: busy message, no model
    NO_STREAM = "no_stream"  # the webhook answered, the stream never came
    CLOSED = "closed"  # outside business hours: the closed message, no model
    CRASHED = "crashed"  # the process died during the call
    # Outbound calls (phonebridge/outbound/): the callee's side of a call we placed.
    NO_ANSWER = "no_answer"  # it rang out
    LINE_BUSY = "line_busy"  # the callee's line was busy
    DIAL_FAILED = "dial_failed"  # the carrier could not place it
    CANCELED = "canceled"  # cancelled while queued or ringing
    MACHINE_HANGUP = "machine_hangup"  # an answering machine; the persona hangs up on those
    VOICEMAIL = "voicemail"  # an answering machine; the voicemail was left after the beep
    # Hand-offs to a human (calls/transfer/).
    TRANSFERRED = "transferred"  # handed to a human: the carrier dials them or joins them
    TRANSFER_FAILED = "transfer_failed"  # a warm transfer found nobody; the persona's fallback
    # The caller pressed the persona's opt-out key (an outbound call's callee: the
    # number goes on the do-not-call list).
    OPTED_OUT = "opted_out"

    @property
    def ended_by(self) -> str:
        if self in (
            CallEndReason.CALLER_HANGUP,
            CallEndReason.CALLER_DROPPED,
            CallEndReason.NO_ANSWER,
            CallEndReason.LINE_BUSY,
            CallEndReason.CANCELED,
            CallEndReason.OPTED_OUT,
        ):
            return "caller"
        if self in (
            CallEndReason.MODEL_FAILED,
            CallEndReason.MODEL_ENDED,
            CallEndReason.MODEL_STALLED,
        ):
            # The bridge hangs up on a stalled model, but the model is why.
            return "model"
        return "bridge"

    @property
    def caller_on_line(self) -> bool:
        """Can the carrier still reach the caller once the stream is over (to say
        a goodbye, a voicemail, a fallback)? Not when they hung up or were never
        reached; yes after an opt-out: the choice to end was the callee's, but
        they pressed a key and are waiting for the goodbye."""
        return self not in (
            CallEndReason.CALLER_HANGUP,
            CallEndReason.CALLER_DROPPED,
            CallEndReason.NO_ANSWER,
            CallEndReason.LINE_BUSY,
            CallEndReason.CANCELED,
        )

    @property
    def wants_fallback(self) -> bool:
        """Did the caller miss the conversation through no choice of theirs?"""
        return self in (
            CallEndReason.MODEL_FAILED,
            CallEndReason.MODEL_ENDED,
            CallEndReason.MODEL_STALLED,
            CallEndReason.BRIDGE_ERROR,
            # The stream broke, not the caller: they may still be on the line.
            CallEndReason.PROTOCOL_ERROR,
            # Twilio asks the action URL when a stream fails to start, with the
            # caller still on the line.
            CallEndReason.NO_STREAM,
            CallEndReason.DRAIN,
            # A warm transfer found no human and the persona says: fallback.
            CallEndReason.TRANSFER_FAILED,
        )


@dataclass(frozen=True, slots=True)
class Handoff:
    """Where the caller goes when the bridge lets go of the call (a transfer).

    ``join`` False: dial ``to`` (E.164 or ``sip:``), a cold transfer. True:
    join the room ``to`` where an accepting human already waits (warm).
    """

    to: str
    join: bool = False


@dataclass(frozen=True, slots=True)
class CallOutcome:
    call_sid: str
    persona_id: str
    reason: CallEndReason
    detail: str = ""
    handoff: Handoff | None = None


class OutcomeBook:
    """The last few hundred outcomes, by call SID (bounded: Twilio asks at once)."""

    def __init__(self, capacity: int = 512) -> None:
        self._capacity = capacity
        self._outcomes: OrderedDict[str, CallOutcome] = OrderedDict()
        self._waiters: dict[str, asyncio.Future[CallOutcome]] = {}

    def record(self, outcome: CallOutcome) -> None:
        waiter = self._waiters.pop(outcome.call_sid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(outcome)  # the action request was already asking
            return
        self._outcomes[outcome.call_sid] = outcome
        self._outcomes.move_to_end(outcome.call_sid)
        while len(self._outcomes) > self._capacity:
            self._outcomes.popitem(last=False)

    def pop(self, call_sid: str) -> CallOutcome | None:
        return self._outcomes.pop(call_sid, None)

    async def wait_pop(self, call_sid: str, within: float) -> CallOutcome | None:
        """The outcome, waiting up to ``within`` seconds for a teardown to record it."""
        known = self.pop(call_sid)
        if known is not None:
            return known
        waiter = self._waiters.get(call_sid)
        if waiter is None:
            waiter = self._waiters[call_sid] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(within):
                return await asyncio.shield(waiter)
        except TimeoutError:
            return None
        finally:
            if self._waiters.get(call_sid) is waiter:
                del self._waiters[call_sid]
