"""The callee's opt-out during an outbound call: a :class:`~phonebridge.calls.policy.CallPolicy`.

The persona's opt-out digit (``outbound.opt_out_digit``, 9 by default) ends
the call with ``opted_out`` (what runs after the stream then says the
persona's goodbye) and puts the number on the do-not-call list. It is a
policy like the transfer triggers, so the session has one seam for
everything that acts on a key; it sees keys first (the bridge adds it
``first``), so an opt-out digit is never also a keypad transfer.
"""

from __future__ import annotations

from collections.abc import Callable

from phonebridge.calls.outcome import CallEndReason, CallOutcome
from phonebridge.calls.policy import CallControls


class OptOutPolicy:
    """Watches one outbound call's keypad for its opt-out digit."""

    def __init__(self, digit: str, on_opt_out: Callable[[], None]) -> None:
        self._digit = digit
        self._on_opt_out = on_opt_out
        self._call: CallControls | None = None
        self._done = False

    def start(self, call: CallControls) -> None:
        self._call = call

    async def key(self, digit: str, at: float) -> bool:
        if digit != self._digit or self._call is None:
            return False
        if not self._done:
            self._done = True
            self._on_opt_out()
            self._call.end(CallEndReason.OPTED_OUT, f"pressed {digit}: added to do-not-call")
        return True

    def agent_text(self, piece: str, at: float) -> None:
        pass

    def caller_text(self, text: str, at: float) -> None:
        pass

    def next_deadline(self) -> float | None:
        return None

    def poll(self, now: float) -> None:
        pass

    async def close(self, outcome: CallOutcome) -> None:
        self._call = None
