"""A warm hand-off's states, and the carrier side it drives. Sans-I/O, time passed in.

The human is dialled first; the caller stays on the bridge, on hold. Then:

```
DIALLING --answered--> WHISPER --accept key--> ACCEPTED  (the caller is bridged)
   |                      |------other key---> DECLINED
   |                      |------hung up-----> DECLINED
   |                      '--no key in time--> UNANSWERED
   |--no-answer/busy/failed/canceled, or the ring bound--> UNANSWERED
   '--the carrier refused the dial--> FAILED
any state --the caller hung up--> ABANDONED
```

A result is set once: every later event (a late key, a status callback
after the bound) is ignored, so a hand-off ends in exactly one outcome.

The carrier side (:class:`HumanDialer`) places the human's call and turns
its webhooks into :class:`HumanListener` calls; what the human hears next is
a :data:`HumanPrompt` the carrier renders (Twilio: telephony/twilio/transfer.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

RING_GRACE_SECONDS: Final = 5.0
"""The carrier reports no-answer itself after ``ring_seconds`` (it was told the
bound); the bridge's own bound waits this much longer before giving up on it,
so a slow status callback does not race the bridge's own decision."""


class TransferResult(StrEnum):
    """How a hand-off ended, as stored on the call row (``transfer_result``)."""

    DIALLED = "dialled"  # cold: handed to the carrier's <Dial>, which rings the human
    ACCEPTED = "accepted"
    DECLINED = "declined"
    UNANSWERED = "unanswered"
    ABANDONED = "abandoned"  # the caller hung up before the human accepted
    FAILED = "failed"  # the carrier refused to place the human's call


class WarmState(StrEnum):
    DIALLING = "dialling"
    WHISPER = "whisper"
    DONE = "done"


# -- what the human's leg does next ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Whisper:
    """Speak ``text`` and wait ``timeout`` seconds for one key."""

    text: str
    timeout: float
    voice: str | None = None  # the carrier's TTS voice (the persona's tts_voice)
    language: str | None = None


@dataclass(frozen=True, slots=True)
class JoinCaller:
    """Accepted: put the human where the caller is about to arrive."""

    room: str


@dataclass(frozen=True, slots=True)
class Dismiss:
    """Say ``message`` and hang up the human's call."""

    message: str


HumanPrompt = Whisper | JoinCaller | Dismiss

CALLER_LEFT = "Sorry, the caller has already hung up. Goodbye."
DECLINED = "The caller will stay with the assistant. Goodbye."
TOO_LATE = "This transfer is no longer waiting. Goodbye."


class HumanListener(Protocol):
    """The call side of a warm hand-off, as the carrier's webhooks reach it."""

    def human_answered(self) -> HumanPrompt:
        """The human's phone answered (the carrier asks what to play)."""

    def human_pressed(self, digits: str) -> HumanPrompt:
        """The human pressed ``digits`` (empty: no key within the timeout)."""

    def human_ended(self, status: str) -> None:
        """The human's call ended; ``status`` is the carrier's final call status."""


@dataclass(frozen=True, slots=True)
class DialRequest:
    to: str
    """The human: E.164 or a ``sip:`` URI."""
    from_number: str
    """The caller ID the human sees: the number the caller dialled (ours)."""
    caller_call_id: str
    ring_seconds: float


class HumanDialer(Protocol):
    """Places the human's call for a warm hand-off (one per carrier)."""

    async def dial(self, request: DialRequest, listener: HumanListener) -> str:
        """Ring the human; returns the human leg's id. Raises PhonebridgeError if refused."""

    def hang_up(self, human_id: str, *, ringing: bool) -> None:
        """End the human's call in the background; "already gone" is success."""


# -- the state machine ---------------------------------------------------------------


class WarmHandoff:
    """One warm hand-off's state; every method takes the call's ``now`` in seconds."""

    def __init__(
        self, *, now: float, ring_seconds: float, accept_seconds: float, accept_key: str
    ) -> None:
        self.state = WarmState.DIALLING
        self.result: TransferResult | None = None
        self.started = now
        self._ring_deadline = now + ring_seconds + RING_GRACE_SECONDS
        self._accept_seconds = accept_seconds
        self._accept_deadline: float | None = None
        self.accept_key = accept_key
        self.pressed = ""

    def _finish(self, result: TransferResult) -> TransferResult | None:
        if self.result is not None:
            return None
        self.result = result
        self.state = WarmState.DONE
        return result

    def answered(self, now: float) -> bool:
        """The human answered; True if the whisper should play (still dialling)."""
        if self.state is not WarmState.DIALLING:
            return False
        self.state = WarmState.WHISPER
        self._accept_deadline = now + self._accept_seconds
        return True

    def key(self, digits: str) -> TransferResult | None:
        """The human's key(s); empty = none within the whisper's timeout."""
        if self.state is not WarmState.WHISPER:
            return None
        self.pressed = digits
        if not digits:
            return self._finish(TransferResult.UNANSWERED)
        if digits[:1] == self.accept_key:
            return self._finish(TransferResult.ACCEPTED)
        return self._finish(TransferResult.DECLINED)

    def human_ended(self, status: str) -> TransferResult | None:
        """The carrier's final status of the human's call."""
        if self.state is WarmState.WHISPER:
            return self._finish(TransferResult.DECLINED)  # hung up during the whisper
        if self.state is WarmState.DIALLING:
            if status == "completed":
                # Answered and ended before the whisper was asked for (a fax, a
                # network hiccup): nobody heard anything.
                return self._finish(TransferResult.UNANSWERED)
            return self._finish(TransferResult.UNANSWERED)  # no-answer, busy, failed, canceled
        return None

    def dial_failed(self) -> TransferResult | None:
        return self._finish(TransferResult.FAILED)

    def caller_gone(self) -> TransferResult | None:
        return self._finish(TransferResult.ABANDONED)

    def next_deadline(self) -> float | None:
        if self.state is WarmState.DIALLING:
            return self._ring_deadline
        if self.state is WarmState.WHISPER:
            assert self._accept_deadline is not None
            # The whisper's own timeout posts an empty key first; this is the backstop.
            return self._accept_deadline + RING_GRACE_SECONDS
        return None

    def poll(self, now: float) -> TransferResult | None:
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return None
        return self._finish(TransferResult.UNANSWERED)
