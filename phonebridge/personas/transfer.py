"""A persona's ``transfer:`` section: when and how a caller is handed to a human (issue 17).

PersonaPlex has no function calling, so the bridge decides from what it can
see: the caller's keys (``keys``), the agent's own words (``agent_phrases``)
and, best-effort, the caller's words (``caller_phrases``, only where a live
caller transcript exists: none ships today, see docs/transfer.md). Checked
here once, with the loader's ``file:line`` problems:

- ``keys`` maps one DTMF key (``0-9``, ``*``, ``#``) to an action;
- every pattern compiles as a Python regular expression (matched
  case-insensitively), is short, and cannot match the empty string (a
  pattern that matches nothing would fire on the first word);
- ``to`` is E.164 (the fallback's rule) or a ``sip:`` URI;
- ``warm.whisper`` names only the facts the summary builder has.
"""

from __future__ import annotations

import re
import string
from enum import StrEnum
from typing import Annotated, Final, Literal

import regex
from pydantic import AfterValidator, BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from .shown import shown
from .strict import Strict

MAX_PATTERN_CHARS: Final = 200
"""Why 200: a phrase is a few words; a longer pattern is likely a mistake, and
patterns run on every piece of agent text."""

MAX_PATTERNS: Final = 32

SIP_PATTERN: Final = re.compile(
    r"^sips?:[A-Za-z0-9._~%!$&'()*+,;=:-]+@[A-Za-z0-9.-]+(:[0-9]{1,5})?$"
)
_E164: Final = re.compile(r"^\+[1-9][0-9]{1,14}$")

DTMF_KEYS: Final = frozenset("0123456789*#")

WHISPER_FIELDS: Final = frozenset({"persona", "caller", "agent", "digits", "accept_key"})
DEFAULT_WHISPER: Final = (
    "Transfer from {persona}. Caller {caller}. The agent said: {agent}. "
    "Keys pressed: {digits}. Press {accept_key} to accept the call."
)


class KeyAction(StrEnum):
    """What a mapped key does."""

    TRANSFER = "transfer"  # hand the caller to ``to`` (cold or warm, per ``mode``)
    OPT_OUT = "opt_out"  # the caller opts out: the call ends politely, on record
    REPEAT = "repeat"  # ask the model to say its last answer again (text-injection providers)


class TransferMode(StrEnum):
    COLD = "cold"
    WARM = "warm"


def _target(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        raise PydanticCustomError(
            "e164_unquoted",
            'phone numbers must be quoted strings: write "+{value}" (YAML reads '
            "+{value} without quotes as a number)",
            {"value": value},
        )
    if not isinstance(value, str):
        return value
    if _E164.fullmatch(value) or SIP_PATTERN.fullmatch(value):
        return value
    raise PydanticCustomError(
        "transfer_target",
        "{value} is neither an E.164 number (+14165550123) nor a SIP URI (sip:desk@example.com)",
        {"value": shown(value)},
    )


def _key_text(value: object) -> object:
    # YAML reads an unquoted 0 as the integer 0 (and `#` starts a comment, `*` an alias).
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9:
        return str(value)
    return value


def _dtmf_key(value: str) -> str:
    if value not in DTMF_KEYS:
        raise PydanticCustomError(
            "dtmf_key", "{value} is not a keypad key (0-9, * or #)", {"value": shown(value)}
        )
    return value


def _pattern(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("empty", "a pattern must not be empty", {})
    try:
        # The dialect the triggers run (calls/transfer/triggers.py says why regex).
        compiled = regex.compile(value, regex.IGNORECASE)
    except regex.error as exc:
        raise PydanticCustomError(
            "regex",
            "{value} is not a regular expression: {why}",
            {"value": shown(value), "why": str(exc)},
        ) from exc
    if compiled.fullmatch(""):
        raise PydanticCustomError(
            "regex_empty",
            "{value} matches empty text, so it would fire on anything: make it name words",
            {"value": shown(value)},
        )
    return value


def _whisper(value: str) -> str:
    text = value.strip()
    if not text:
        raise PydanticCustomError("empty", "must not be empty", {})
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise PydanticCustomError(
            "whisper_template",
            "the template is malformed ({why}): write {{ and }} for braces",
            {"why": str(exc)},
        ) from exc
    unknown = sorted(names - WHISPER_FIELDS)
    if unknown:
        raise PydanticCustomError(
            "whisper_field",
            "unknown placeholder {names} (allowed: {allowed})",
            {
                "names": ", ".join("{" + name + "}" for name in unknown),
                "allowed": ", ".join("{" + name + "}" for name in sorted(WHISPER_FIELDS)),
            },
        )
    return text


TransferTarget = Annotated[str, BeforeValidator(_target)]
DtmfKey = Annotated[str, BeforeValidator(_key_text), AfterValidator(_dtmf_key)]
Pattern = Annotated[str, Field(max_length=MAX_PATTERN_CHARS), AfterValidator(_pattern)]
Patterns = Annotated[tuple[Pattern, ...], Field(min_length=1, max_length=MAX_PATTERNS)]


class AgentPhrases(Strict):
    """Patterns over the agent's own transcript ("transfer you", "connect you with")."""

    patterns: Patterns
    confirm_seconds: float = Field(default=1.5, ge=0, le=10)
    """Wait this long after the agent's last word before handing over, so the model
    finishes its sentence ("...I'll transfer you to our billing team now")."""


class CallerPhrases(Strict):
    """Patterns over the caller's words. Best-effort: only where a live caller
    transcript is configured (none ships today; docs/transfer.md)."""

    patterns: Patterns


class Warm(Strict):
    """A warm hand-off: the human hears a summary and accepts before the caller is bridged."""

    whisper: Annotated[str, AfterValidator(_whisper)] = DEFAULT_WHISPER
    """Spoken to the human with the carrier's TTS; placeholders: {persona}, {caller},
    {agent} (the agent's last utterances), {digits} (keys pressed), {accept_key}."""

    accept_key: DtmfKey = "1"
    ring_seconds: float = Field(default=25, ge=5, le=120)
    """How long the human's phone may ring before the hand-off counts as unanswered."""

    accept_seconds: float = Field(default=15, ge=3, le=60)
    """After answering, how long the human has to press ``accept_key`` (whisper included)."""

    hold_audio: str | None = None
    """A mono 16-bit WAV (path relative to the persona file) the caller hears while the
    human is rung; ``null`` = a soft built-in chime."""

    on_no_answer: Literal["persona", "fallback"] = "persona"
    """Declined or unanswered: back to the persona (the same model session), or the
    persona's ``fallback`` (its message, or its own transfer number)."""


class Transfer(Strict):
    """The ``transfer:`` section of a persona file."""

    to: TransferTarget | None = None
    """Where the caller goes: E.164 or a ``sip:`` URI."""

    mode: TransferMode = TransferMode.COLD
    keys: dict[DtmfKey, KeyAction] = Field(default_factory=dict)
    agent_phrases: AgentPhrases | None = None
    caller_phrases: CallerPhrases | None = None
    warm: Warm = Warm()

    @model_validator(mode="after")
    def _needs_target(self) -> Transfer:
        hands_over = (
            KeyAction.TRANSFER in self.keys.values()
            or self.agent_phrases is not None
            or self.caller_phrases is not None
        )
        if hands_over and self.to is None:
            raise PydanticCustomError(
                "transfer_to_missing",
                "a key, agent_phrases or caller_phrases hands the caller over, "
                "but 'to' is not set: add to: \"+1...\" (or sip:...)",
                {},
            )
        return self
