"""The whisper: what the human hears before accepting a warm transfer.

Built from what the bridge saw of the call so far — the persona, the caller's
number, the agent's last utterances, the keys pressed — and spoken with the
carrier's TTS (Twilio ``<Say>``). Short on purpose: the caller is on hold
while it plays.

The agent's text arrives as SentencePiece pieces (PROTOCOLS.md §2.2);
:class:`Utterances` joins them into utterances, split at sentence ends and at
pauses, and keeps the last few.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

UTTERANCE_PAUSE_SECONDS: Final = 1.0
"""A gap this long between pieces ends an utterance (the model stopped talking)."""

KEEP_UTTERANCES: Final = 3
MAX_AGENT_CHARS: Final = 240
"""Why 240: about fifteen seconds of TTS; longer keeps the caller on hold."""

_SENTENCE_END = (".", "?", "!")


class Utterances:
    """The agent's last few utterances, from its text pieces (``at`` in call seconds)."""

    def __init__(self, keep: int = KEEP_UTTERANCES) -> None:
        self._keep = keep
        self._done: deque[str] = deque(maxlen=keep)
        self._current = ""
        self._last_at: float | None = None

    def add(self, piece: str, at: float) -> None:
        if self._last_at is not None and at - self._last_at >= UTTERANCE_PAUSE_SECONDS:
            self._close()
        self._last_at = at
        self._current += piece
        if self._current.rstrip().endswith(_SENTENCE_END):
            self._close()

    def _close(self) -> None:
        text = " ".join(self._current.split())
        if text:
            self._done.append(text)
        self._current = ""

    def last(self) -> tuple[str, ...]:
        current = " ".join(self._current.split())
        both = (*self._done, current) if current else tuple(self._done)
        return both[-self._keep :]


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the whisper may say about the call."""

    persona: str
    caller: str
    agent: tuple[str, ...]
    digits: str


def spoken_number(number: str) -> str:
    """Digits one by one, so TTS reads "4 1 6" rather than "four hundred sixteen"."""
    digits = [char for char in number if char.isdigit()]
    return " ".join(digits) if digits else "unknown"


def agent_summary(utterances: tuple[str, ...]) -> str:
    """The last utterances that fit in :data:`MAX_AGENT_CHARS`, oldest first."""
    kept: list[str] = []
    size = 0
    for text in reversed(utterances):
        if size + len(text) > MAX_AGENT_CHARS:
            if not kept:
                kept.append("..." + text[-(MAX_AGENT_CHARS - 3) :])
            break
        kept.append(text)
        size += len(text) + 1
    # The template supplies its own full stop ("The agent said: {agent}.").
    return " ".join(reversed(kept)).rstrip(".") or "nothing yet"


def whisper_text(template: str, facts: CallFacts, accept_key: str) -> str:
    """The template (validated by the persona loader) filled in."""
    return template.format(
        persona=facts.persona,
        caller=spoken_number(facts.caller),
        agent=agent_summary(facts.agent),
        digits=" ".join(facts.digits) or "none",
        accept_key=accept_key,
    )
