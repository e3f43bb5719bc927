"""What a persona file may say (issue 4, "Personas"; PROTOCOLS.md §1, §2.1, §3).

One YAML file per persona. :class:`PersonaFile` is the file's content, validated
strictly (``extra="forbid"``: a typo such as ``prompts:`` is an error, never a
silently ignored key). :class:`Persona` adds what the loader knows: the ``id``
(the file stem) and the ``source`` path.

The values a persona carries end up on the wire, so they are checked here, once:

- ``voice`` becomes the self-hosted server's ``voice_prompt`` file name, which
  the server joins onto its voice directory without sanitising it (§2.1): only
  names from :data:`phonebridge.models.base.VOICES` pass.
- ``prompt`` becomes a URL query parameter (``text_prompt`` §2.1, ``persona`` §3).
  An empty one crashes the self-hosted session seconds in, so it must have text;
  and it is capped so that, percent-encoded, it stays inside common URL limits.
- ``numbers`` and ``fallback.transfer_to`` are E.164 (Twilio's ``To``, §1.1).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from phonebridge.models.base import SAMPLE_RATE, VOICES, SessionRequest

from .hours import DEFAULT_CLOSED_MESSAGE, BusinessHours, timezone_name
from .shown import shown
from .strict import Strict
from .transfer import Transfer

ProviderName = Literal["personaplex", "polargrid", "fal"]
"""``personaplex`` = the self-hosted pool (PERSONAPLEX_URLS); the others are hosted."""

PROVIDERS: tuple[ProviderName, ...] = ("personaplex", "polargrid", "fal")

CarrierName = Literal["twilio", "telnyx", "plivo", "vonage", "signalwire", "exotel"]
"""Carriers a call can arrive through (CARRIERS.md)."""

E164_PATTERN = re.compile(r"^\+[1-9][0-9]{1,14}$")  # [0-9]: \d would also match non-ASCII digits

MAX_PROMPT_CHARS = 2000
"""Why 2000: the prompt travels in a query string (§2.1, §3). Percent-encoding can
triple it, and many proxies and load balancers cap a request line at 8 KiB."""

MAX_CALL_SECONDS_CEILING = 4 * 3600
"""Twilio's own ceiling on a call's length is four hours."""

DEFAULT_MODEL_STALL_SECONDS = 5.0
"""Why 5 s: a healthy model emits output every 80 ms, so one second of nothing is
already abnormal, but a hosted provider's network or a GPU hiccup can pause
output briefly; 5 s of dead air is where a caller starts to hang up anyway."""

DEFAULT_APOLOGY = "Sorry, we're having trouble right now. Please call back later."
DEFAULT_BUSY_MESSAGE = "All our lines are busy right now. Please call back in a few minutes."

# Twilio <Say> voice names: "alice", "man", "Polly.Joanna", "Google.en-US-Standard-C",
# "Polly.Joanna-Neural". Checked loosely (Twilio adds voices); it lands in an XML
# attribute, so only a safe character set is allowed.
_TTS_VOICE_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")
_LANGUAGE_PATTERN = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def _quoted_number(value: object) -> object:
    # YAML reads an unquoted +14165550123 as the integer 14165550123: say so
    # instead of pydantic's bare "Input should be a valid string".
    if isinstance(value, int) and not isinstance(value, bool):
        raise PydanticCustomError(
            "e164_unquoted",
            'phone numbers must be quoted strings: write "+{value}" (YAML reads '
            "+{value} without quotes as a number)",
            {"value": value},
        )
    return value


def _e164(value: str) -> str:
    if not E164_PATTERN.fullmatch(value):
        raise PydanticCustomError(
            "e164",
            "{value} is not an E.164 number (a '+', the country code, then up to 15 digits "
            "with no spaces or dashes, e.g. +14165550123)",
            {"value": shown(value)},
        )
    return value


def _voice(value: str) -> str:
    if value in VOICES:
        return value
    if value.endswith(".pt") and value[:-3] in VOICES:
        raise PydanticCustomError(
            "voice_suffix",
            "write {value} without '.pt' ({bare}): the bridge adds the suffix where "
            "the server needs it",
            {"value": shown(value), "bare": shown(value[:-3])},
        )
    raise PydanticCustomError(
        "voice",
        "unknown voice {value} (expected one of {voices})",
        {"value": shown(value), "voices": ", ".join(sorted(VOICES))},
    )


def _text(value: str) -> str:
    stripped = value.strip()
    if not stripped:
        raise PydanticCustomError("empty", "must not be empty", {})
    return stripped


E164 = Annotated[str, BeforeValidator(_quoted_number), AfterValidator(_e164)]
Voice = Annotated[str, AfterValidator(_voice)]
NonEmptyText = Annotated[str, AfterValidator(_text)]
Prompt = Annotated[NonEmptyText, Field(max_length=MAX_PROMPT_CHARS)]


_Strict = Strict


class Limits(_Strict):
    """When the bridge ends a call by itself."""

    max_call_seconds: float = Field(default=600, gt=0, le=MAX_CALL_SECONDS_CEILING)
    """Hang up after this long. PersonaPlex's context holds ~4 minutes of frames
    (§2.5): past that the prompt scrolls out of view and the persona drifts, so
    values much above 240 trade faithfulness for length."""

    silence_hangup_seconds: float | None = Field(default=30, gt=0)
    """End the call when the caller has been silent this long; ``null`` = never."""

    model_stall_seconds: float = Field(default=DEFAULT_MODEL_STALL_SECONDS, gt=0, le=60)
    """End the call (the caller hears ``fallback``) when the model, once ready, has
    produced nothing for this long. A healthy model sends a page every 80 ms for as
    long as it is fed (§2.3 step 5), so seconds of nothing mean it is stuck. Per
    persona because it is a caller-experience choice, like ``silence_hangup_seconds``:
    how much dead air a caller of *this* line sits through before the apology."""


class Fallback(_Strict):
    """What the caller hears when the model fails or a limit ends the call."""

    say: NonEmptyText = DEFAULT_APOLOGY
    """Spoken with Twilio ``<Say>``, then the call hangs up (unless ``transfer_to``)."""

    transfer_to: E164 | None = None
    """If set, ``<Dial>`` this number (a human) after ``say`` instead of hanging up."""


DEFAULT_OPT_OUT_MESSAGE = "You will not be called again. Goodbye."


class Outbound(_Strict):
    """How this persona places calls (docs/outbound.md)."""

    open_model: Literal["answer", "dial"] = "answer"
    """When the model session opens: ``answer`` (nothing is billed while the
    phone rings; the model's warm-up is heard as silence) or ``dial`` (the callee
    hears the persona at once; ringing costs model-socket seconds)."""

    on_machine: Literal["voicemail", "hangup"] = "hangup"
    """An answering machine (Twilio async AMD): leave ``voicemail`` after the beep,
    or ``hangup``."""

    voicemail: NonEmptyText | None = None
    """The message left after the beep (``on_machine: voicemail``), spoken with ``<Say>``."""

    opt_out_digit: Annotated[str, Field(pattern=r"^[0-9*#]$")] | None = "9"
    """A keypad digit that adds the callee to the do-not-call list and ends the
    call politely; ``null`` = none."""

    opt_out_message: NonEmptyText = DEFAULT_OPT_OUT_MESSAGE
    """Said before hanging up after an opt-out."""


MAX_CONTEXT_TIMEOUT_MS = 5000
DEFAULT_CONTEXT_TIMEOUT_MS = 800
"""Why 800 ms: the lookup runs before the model session opens, while the caller
hears ringback; it adds to the time before the model is ready, so it is kept
under a second (the issue's bound) with room for the webhook's own work."""

MAX_ANSWER_WITHIN_SECONDS = 10.0
"""Twilio gives up on a voice webhook after 15 s; holding the answer longer than
10 s would leave too little margin for the rest of the webhook."""

_URL_PATTERN = re.compile(r"^https?://[^\s/@]+(/[^\s]*)?$")


def _http_url(value: str) -> str:
    if not _URL_PATTERN.fullmatch(value):
        raise PydanticCustomError(
            "http_url",
            "{value} is not an http(s) URL without credentials (e.g. https://crm.example/lookup)",
            {"value": shown(value)},
        )
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
Timezone = Annotated[str, AfterValidator(timezone_name)]


class ContextHook(_Strict):
    """The context webhook: who is calling, asked before the model opens (docs/webhooks.md)."""

    url: HttpUrl
    timeout_ms: int = Field(default=DEFAULT_CONTEXT_TIMEOUT_MS, ge=50, le=MAX_CONTEXT_TIMEOUT_MS)
    """The whole lookup (connect, request, reply); past it the call goes on with
    ``fallback_prompt``."""

    fallback_prompt: Prompt | None = None
    """The prompt when the lookup or the prompt's rendering fails; ``null`` = the
    prompt with its personal parts left out."""


class Closed(_Strict):
    """What a caller outside ``hours`` gets: a message, or another persona."""

    say: NonEmptyText = DEFAULT_CLOSED_MESSAGE
    """Said with Twilio ``<Say>`` (a template, like the prompt), then the call hangs up."""

    route_to: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")] | None = None
    """Another persona's id: the call goes on with that persona instead."""


class Webhooks(_Strict):
    """Where this persona's call summaries go (overrides PHONEBRIDGE_CALL_ENDED_WEBHOOK_URL)."""

    call_ended: HttpUrl | None = None


class PersonaFile(_Strict):
    """The content of one ``personas/*.yaml`` file."""

    name: NonEmptyText
    """Shown on the dashboard and in logs."""

    description: str = ""
    """Free text for the humans who maintain the file."""

    numbers: tuple[E164, ...] = ()
    """Dialled numbers (Twilio ``To``) that reach this persona."""

    carrier: CarrierName | None = None
    """Bind ``numbers`` to one carrier: a call to them arriving through any other
    carrier is not routed here (``null`` = whichever carrier the number is on)."""

    provider: ProviderName
    voice: Voice
    prompt: Prompt

    default: bool = False
    """The persona for dialled numbers no file lists. At most one file may say so."""

    overflow: ProviderName | None = None
    """Hosted provider to use when no self-hosted slot is free; ``null`` = say busy."""

    limits: Limits = Limits()
    fallback: Fallback = Fallback()

    busy_message: NonEmptyText = DEFAULT_BUSY_MESSAGE
    """Spoken (then hang up) when no model slot is free and there is no overflow."""

    recording: bool = True
    """Record the call (both sides). Callers may need to be told: check local law."""

    tts_voice: Annotated[str, Field(pattern=_TTS_VOICE_PATTERN.pattern)] | None = None
    """Twilio ``<Say voice=...>`` for busy and fallback messages (e.g. ``Polly.Joanna``)."""

    tts_language: Annotated[str, Field(pattern=_LANGUAGE_PATTERN.pattern)] | None = None
    """Twilio ``<Say language=...>`` (e.g. ``en-US``); ``null`` = Twilio's default."""

    dtmf_to_model: bool = True
    """Tell the model about keypad digits, where the provider supports text injection."""

    outbound: Outbound = Outbound()
    """How calls this persona places behave (only used when outbound calls are enabled)."""

    @field_validator("outbound")
    @classmethod
    def _voicemail_needs_message(cls, outbound: Outbound) -> Outbound:
        if outbound.on_machine == "voicemail" and outbound.voicemail is None:
            raise PydanticCustomError(
                "voicemail_missing",
                "on_machine is voicemail but no voicemail message is set: add "
                "outbound.voicemail, or use on_machine: hangup",
                {},
            )
        return outbound

    transfer: Transfer | None = None
    """Hand the caller to a human: keypad keys, the agent's words, cold or warm
    (personas/transfer.py, docs/transfer.md). ``null`` = the persona never transfers
    (``fallback.transfer_to`` still applies when a call fails)."""

    timezone: Timezone | None = None
    """IANA time zone of the line: ``local_date``/``local_time`` and ``hours`` use it."""

    hours: BusinessHours | None = None
    """Opening hours; ``null`` = always open. Needs ``timezone``."""

    closed: Closed = Closed()
    """What callers outside ``hours`` get."""

    context: ContextHook | None = None
    """Look the caller up before the model opens; the reply's values fill the prompt."""

    answer_within_seconds: float | None = Field(default=None, ge=0, le=MAX_ANSWER_WITHIN_SECONDS)
    """Hold the webhook's answer (the caller hears ringback) until the model is
    ready, at most this long; ``0`` = answer at once; ``null`` = the setting
    PHONEBRIDGE_ANSWER_WITHIN_SECONDS."""

    webhooks: Webhooks = Webhooks()

    record_prompt: bool = True
    """Keep the prompt the model was given (rendered) in the call's transcript."""

    @field_validator("overflow")
    @classmethod
    def _overflow_differs(
        cls, overflow: ProviderName | None, info: ValidationInfo
    ) -> ProviderName | None:
        # Fields validate in declaration order, so ``provider`` is known here
        # (absent only if it was itself invalid: then that error is reported).
        if overflow is not None and overflow == info.data.get("provider"):
            raise PydanticCustomError(
                "overflow_same",
                "overflow '{overflow}' is the same provider as 'provider': use a different "
                "provider, or remove overflow",
                {"overflow": overflow},
            )
        return overflow

    @field_validator("hours")
    @classmethod
    def _hours_have_a_timezone(
        cls, hours: BusinessHours | None, info: ValidationInfo
    ) -> BusinessHours | None:
        # An invalid timezone is absent from info.data: that error is reported instead.
        if hours is not None and "timezone" in info.data and info.data["timezone"] is None:
            raise PydanticCustomError(
                "hours_timezone",
                "set timezone (e.g. timezone: America/Toronto) so opening hours are local time",
                {},
            )
        return hours


class Persona(PersonaFile):
    """A loaded persona: the file's content plus where it came from."""

    id: str
    """The file stem (``citysan`` for ``personas/citysan.yaml``): stable, used in URLs and logs."""

    source: Path

    def session_request(self, sample_rate: int = SAMPLE_RATE) -> SessionRequest:
        """What to ask the model for on a call to this persona, on a leg at ``sample_rate``."""
        return SessionRequest(prompt=self.prompt, voice=self.voice, sample_rate=sample_rate)

    def providers(self) -> tuple[ProviderName, ...]:
        """The provider, then the overflow provider if there is one."""
        return (self.provider,) if self.overflow is None else (self.provider, self.overflow)
