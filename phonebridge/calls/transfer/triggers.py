"""When to hand over: the keypad map and phrase patterns. Sans-I/O, time passed in.

PersonaPlex has no function calling (PROTOCOLS.md §2), so the bridge reads
intent from what it can see: the caller's keys and the agent's own words
(and, best-effort, the caller's words where a live transcript exists).

- :class:`KeypadTriggers` maps a key to an action at once; a key outside the
  map is not consumed (it goes to the model as before).
- :class:`PhraseTrigger` watches a stream of text pieces (SentencePiece
  tokens, PROTOCOLS.md §2.2 kind ``0x02``) for a pattern. A match does not
  fire at once: the agent is usually mid-sentence ("I'll transfer you to our
  billing team, one moment"), and cutting it off sounds broken. It fires once
  the text has been quiet for ``confirm_seconds`` (the model finished its
  sentence), and at the latest :data:`MAX_CONFIRM_FACTOR` times that after the
  match (a model that never stops talking still hands over).

Every trigger fires at most once per call: a phrase the model repeats, or a
key pressed twice, never starts a second hand-off.

Patterns come from persona files, so one can backtrack catastrophically
(``(a+)+$`` over a long run of a's); it runs on the event loop that carries
every call's audio. Python's ``re`` has no time limit, so patterns are
compiled with the ``regex`` package (the same syntax for anything ``re``
accepts) and each search gets :data:`SEARCH_TIMEOUT_SECONDS`: a pattern that
exceeds it is dropped for the rest of the call and reported once, instead of
freezing every call on the process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

import regex

from phonebridge.personas.transfer import KeyAction

log = logging.getLogger(__name__)

TriggerKind = Literal["dtmf", "agent_phrase", "caller_phrase"]

WINDOW_CHARS: Final = 300
"""How much recent text a pattern sees: a sentence or two. Bounded so a long
call costs the same per piece as a short one."""

MAX_CONFIRM_FACTOR: Final = 4.0

SEARCH_TIMEOUT_SECONDS: Final = 0.005
"""A sane pattern searches 300 characters in microseconds; 5 ms is a frame's
quarter, the most one piece of text may hold the loop."""


@dataclass(frozen=True, slots=True)
class Firing:
    """A trigger fired: ``action`` is what the call should do now."""

    trigger: TriggerKind
    action: KeyAction
    detail: str
    """What fired it, for the transcript: ``key 0``, ``'transfer you' in "..."``."""
    at: float


class KeypadTriggers:
    """The persona's keypad map (``transfer.keys``)."""

    def __init__(self, keys: Mapping[str, KeyAction]) -> None:
        self._keys = dict(keys)
        self._fired: set[str] = set()

    def key(self, digit: str, at: float) -> Firing | None:
        """The action for ``digit``; None when the key is not mapped (the model gets it).

        A mapped key fires once: pressed again it is consumed but does nothing
        (a caller hammering 0 while the transfer starts must not start two).
        """
        action = self._keys.get(digit)
        if action is None:
            return None
        if digit in self._fired and action is not KeyAction.REPEAT:
            return Firing("dtmf", action, f"key {digit} again (ignored)", at)
        self._fired.add(digit)
        return Firing("dtmf", action, f"key {digit}", at)


class PhraseTrigger:
    """Regular expressions over a stream of text pieces; fires once, after a quiet spell."""

    def __init__(
        self,
        patterns: Iterable[str],
        *,
        confirm_seconds: float,
        trigger: TriggerKind,
        action: KeyAction = KeyAction.TRANSFER,
    ) -> None:
        self._patterns = [regex.compile(pattern, regex.IGNORECASE) for pattern in patterns]
        self._confirm = confirm_seconds
        self._trigger: TriggerKind = trigger
        self._action = action
        self._window = ""
        self._matched: tuple[str, str, float] | None = None  # pattern, text, when
        self._last_text_at = 0.0
        self.fired = False
        self.dropped: list[str] = []
        """Patterns that ran over their time limit on this call."""

    def text(self, piece: str, at: float) -> None:
        """A piece of text at ``at`` (call seconds)."""
        if self.fired:
            return
        self._last_text_at = at
        if self._matched is not None:
            return  # already waiting for the sentence to end
        self._window = (self._window + piece)[-WINDOW_CHARS:]
        for pattern in self._patterns:
            try:
                found = pattern.search(self._window, timeout=SEARCH_TIMEOUT_SECONDS)
            except TimeoutError:
                # A new list: the loop goes on over the old one (no copy per piece).
                self._patterns = [p for p in self._patterns if p is not pattern]
                self.dropped.append(pattern.pattern)
                log.error(
                    "transfer pattern %r took over %.0f ms: dropped for this call",
                    pattern.pattern,
                    SEARCH_TIMEOUT_SECONDS * 1000,
                )
                continue
            if found is not None:
                self._matched = (pattern.pattern, self._window.strip(), at)
                return

    def next_deadline(self) -> float | None:
        """When :meth:`poll` may fire, or None (nothing matched, or already fired)."""
        if self.fired or self._matched is None:
            return None
        matched_at = self._matched[2]
        quiet = max(matched_at, self._last_text_at) + self._confirm
        return min(quiet, matched_at + self._confirm * MAX_CONFIRM_FACTOR)

    def poll(self, now: float) -> Firing | None:
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return None
        assert self._matched is not None
        pattern, text, _ = self._matched
        self.fired = True
        return Firing(self._trigger, self._action, f"{pattern!r} in {text[-120:]!r}", now)

    def disarm(self) -> None:
        """Never fire (the call is already being handed over by another trigger)."""
        self.fired = True
