"""A per-call policy: code that watches a call and may act on it, outside the session.

ARCHITECTURE.md: "if adding a feature means special-casing session.py, fix
the interface instead". Features that decide from what happens *in* a call
(hand the caller to a human on a key or a phrase, opt out, repeat) are a
:class:`CallPolicy` the bridge passes to
:class:`~phonebridge.calls.session.CallSession`. The session tells the policy
what it sees — keys, the agent's text, the caller's text where a live
transcript exists, the clock — and offers it a few
:class:`CallControls`: end the call with a reason (and where the caller goes
next), put a note on the transcript, hold the caller (mute the agent, play a
loop), resume, tell the model something, record a transfer on the call row.

The hooks are synchronous where the session calls them per event (cheap:
a dict lookup, a regex over a short window); :meth:`CallPolicy.key` is async
because a key may become a model injection. Anything slow (a carrier REST
request) is the policy's own task, cancelled by :meth:`CallPolicy.close`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from phonebridge.calls.outcome import CallEndReason, CallOutcome, Handoff


@dataclass(frozen=True, slots=True)
class TransferFacts:
    """A hand-off, as the call row records it."""

    to: str
    mode: str  # cold | warm
    result: str  # calls/transfer/warm.py TransferResult; the journal stamps when it started


class CallControls(Protocol):
    """What a policy may do to its call (implemented by CallSession)."""

    def now(self) -> float:
        """Seconds since the call's leg started."""

    def end(self, reason: CallEndReason, detail: str = "", handoff: Handoff | None = None) -> None:
        """End the call (the first reason wins); ``handoff``: where the caller goes next."""

    def note(self, kind: str, detail: str) -> None:
        """An event on the call's transcript, now."""

    def hold(self, loop: bytes) -> None:
        """Mute the agent and play ``loop`` (PCM at the leg's rate) to the caller, repeated."""

    def resume(self) -> None:
        """End the hold: the caller hears the agent again."""

    async def tell_model(self, text: str) -> bool:
        """Inject ``text`` into the model's context; False if the provider cannot."""

    def record_transfer(self, facts: TransferFacts) -> None:
        """Record (or update) the call's hand-off on its call row."""


class CallPolicy(Protocol):
    """Watches one call; see the module docstring."""

    def start(self, call: CallControls) -> None:
        """The call runs; ``call`` is valid until :meth:`close`."""

    async def key(self, digit: str, at: float) -> bool:
        """The caller pressed ``digit``; True if the policy consumed it (not for the model)."""

    def agent_text(self, piece: str, at: float) -> None:
        """A piece of the agent's text, as the model emitted it."""

    def caller_text(self, text: str, at: float) -> None:
        """The caller's words, where a live caller transcript exists."""

    def next_deadline(self) -> float | None:
        """When :meth:`poll` has something to do (call seconds), or None."""

    def poll(self, now: float) -> None:
        """Time passed (``now`` in call seconds): act on due deadlines."""

    async def close(self, outcome: CallOutcome) -> None:
        """The call ended with ``outcome``: stop the policy's own work (quickly)."""


class Policies:
    """Several policies on one call, as one (the session knows a single policy).

    Each sees every event in order; a key goes to the first that consumes it
    (an opt-out digit is not also a keypad transfer). Closing closes them all,
    even when one fails, so no policy's own work outlives its call.
    """

    def __init__(self, policies: Sequence[CallPolicy]) -> None:
        self._policies = tuple(policies)

    def start(self, call: CallControls) -> None:
        for policy in self._policies:
            policy.start(call)

    async def key(self, digit: str, at: float) -> bool:
        for policy in self._policies:
            if await policy.key(digit, at):
                return True
        return False

    def agent_text(self, piece: str, at: float) -> None:
        for policy in self._policies:
            policy.agent_text(piece, at)

    def caller_text(self, text: str, at: float) -> None:
        for policy in self._policies:
            policy.caller_text(text, at)

    def next_deadline(self) -> float | None:
        due = [d for policy in self._policies if (d := policy.next_deadline()) is not None]
        return min(due, default=None)

    def poll(self, now: float) -> None:
        for policy in self._policies:
            policy.poll(now)

    async def close(self, outcome: CallOutcome) -> None:
        failures: list[BaseException] = []
        for policy in self._policies:
            try:
                await policy.close(outcome)
            except Exception as exc:
                failures.append(exc)
        if failures:
            raise failures[0]
