"""What every carrier's media stream hands the call, and the machinery they share.

CARRIERS.md §0 and §8. Twilio has its own module (PROTOCOLS.md §1.2); the five
further carriers (``telnyx``, ``plivo``, ``vonage``, ``signalwire``,
``exotel``) each parse their own wire in ``phonebridge/telephony/<carrier>/
protocol.py`` — key casing, value types, frame rules and codecs differ too much
to share one parser (§8.1) — and all of them turn it into the same few typed
events below, so a call leg never looks at a carrier's JSON:

- audio is always **PCM16 little-endian at the leg's rate**, with the rate;
- a mark is a name, whatever the carrier calls it (``mark``, ``checkpoint`` →
  ``playedStream``, ``notify`` → ``websocket:notify``);
- the end of the stream says why, in the carrier's words.

:class:`CarrierStream` is the per-socket state machine they share: order
(``start`` first, nothing after the end), counters, and the *tolerance notes*:
an unknown event or field, or a variant CARRIERS.md marks *unverified*, is
accepted and noted **once per socket** (through the ``note`` callback the
caller passes in: logging is the edge's business), never fatal. A documented
field that is missing or of the wrong type is a :class:`RemoteProtocolError`,
after which the socket must be closed.

Outbound, each carrier builds its frames from PCM16 at the leg's rate; the
return value is a list of WebSocket frames (``str`` = text, ``bytes`` =
binary) because some carriers need several per call (Vonage: one binary frame
per 20 ms) and some need none yet (Exotel buffers to its minimum chunk).
"""

from __future__ import annotations

import binascii
import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from phonebridge.errors import LocalProtocolError, RemoteProtocolError

MAX_MESSAGE_CHARS: Final = 256 * 1024
"""Largest text frame parsed. Exotel media frames carry 100 ms (9.6 KB of PCM at
24 kHz, ~13 KB base64); Telnyx may carry up to 30 s of app audio but never sends
that much to us."""

MAX_PAYLOAD_BYTES: Final = 96_000
"""Largest decoded inbound audio payload: 1 s of 48 kHz PCM16."""

_MAX_WIRE_NUMBER_DIGITS: Final = 18  # keeps int() cheap and the value in int64

RATES: Final = (8_000, 16_000, 24_000)
"""Leg rates the bridge handles (the model path is rate-aware at these three)."""


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class StreamStarted:
    """The stream is bound to a call: identity, numbers, custom parameters, rate."""

    stream_id: str
    call_id: str  # the id the carrier's REST API controls the call with ("" when none)
    sample_rate: int  # the leg's rate: audio both ways is PCM16 at this rate
    from_number: str
    to_number: str
    parameters: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class CallerAudio:
    """Caller audio, PCM16 little-endian mono at ``sample_rate``."""

    pcm16: bytes
    sample_rate: int


@dataclass(frozen=True, slots=True)
class DigitPressed:
    digit: str
    duration_ms: int | None


@dataclass(frozen=True, slots=True)
class MarkPlayed:
    """The audio sent before the mark of this name has played (or was cleared)."""

    name: str


@dataclass(frozen=True, slots=True)
class PlaybackCleared:
    """The carrier acknowledged a clear (Plivo ``clearedAudio``, Vonage ``websocket:cleared``)."""


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The carrier ended the stream (``reason`` in its words: ``stop``, ``callended`` …)."""

    reason: str


StreamEvent = (
    StreamStarted | CallerAudio | DigitPressed | MarkPlayed | PlaybackCleared | StreamEnded
)

Frame = str | bytes
"""One WebSocket frame to send: text or binary."""


# --------------------------------------------------------------------------- JSON edge helpers


def load_object(raw: str | bytes, carrier: str) -> dict[str, Any]:
    """One text frame as a JSON object with a string ``event`` (or ``RemoteProtocolError``)."""
    if not isinstance(raw, str):
        raise RemoteProtocolError(f"binary frame on a {carrier} control stream (JSON text only)")
    if len(raw) > MAX_MESSAGE_CHARS:
        raise RemoteProtocolError(f"message of {len(raw)} chars exceeds {MAX_MESSAGE_CHARS}")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise RemoteProtocolError(f"invalid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise RemoteProtocolError(f"message is a JSON {type(doc).__name__}, not an object")
    if not isinstance(doc.get("event"), str):
        raise RemoteProtocolError(f"event must be a string, got {doc.get('event')!r}")
    return doc


def field(obj: Mapping[str, Any], keys: str | tuple[str, ...], where: str) -> Any:
    """The value of the first of ``keys`` present (a tuple lists accepted spellings)."""
    for key in (keys,) if isinstance(keys, str) else keys:
        if key in obj:
            return obj[key]
    raise RemoteProtocolError(f"{where}: missing {keys!r}")


def string(obj: Mapping[str, Any], keys: str | tuple[str, ...], where: str) -> str:
    value = field(obj, keys, where)
    if not isinstance(value, str):
        raise RemoteProtocolError(f"{where}.{keys} must be a string, got {type(value).__name__}")
    return value


def opt_string(obj: Mapping[str, Any], keys: str | tuple[str, ...], where: str) -> str:
    """A string that may be absent or null (then ``""``)."""
    try:
        value = field(obj, keys, where)
    except RemoteProtocolError:
        return ""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RemoteProtocolError(f"{where}.{keys} must be a string, got {type(value).__name__}")
    return value


def obj(doc: Mapping[str, Any], keys: str | tuple[str, ...], where: str) -> dict[str, Any]:
    value = field(doc, keys, where)
    if not isinstance(value, dict):
        raise RemoteProtocolError(f"{where}.{keys} must be an object")
    return value


def number(value: object, where: str) -> int:
    """A non-negative integer sent either as a JSON number or a decimal string.

    Carriers disagree on the type (§8.2: Telnyx ``sample_rate`` is a number,
    Exotel's a string); parsers accept both and reject anything else.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < 10**_MAX_WIRE_NUMBER_DIGITS:
            raise RemoteProtocolError(f"{where} out of range: {value}")
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        if len(value) > _MAX_WIRE_NUMBER_DIGITS:
            raise RemoteProtocolError(f"{where} has too many digits")
        return int(value)
    raise RemoteProtocolError(f"{where} must be a non-negative integer, got {value!r:.40}")


def string_map(value: object, where: str) -> dict[str, str]:
    """A JSON object of string values (custom parameters); null/absent is empty."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise RemoteProtocolError(f"{where} must map strings to strings")
    return dict(value)


def b64_payload(encoded: object, where: str) -> bytes:
    if not isinstance(encoded, str):
        raise RemoteProtocolError(f"{where} must be a base64 string")
    if len(encoded) > 4 * ((MAX_PAYLOAD_BYTES + 2) // 3):
        raise RemoteProtocolError(f"{where} exceeds {MAX_PAYLOAD_BYTES} bytes")
    try:
        return binascii.a2b_base64(encoded, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise RemoteProtocolError(f"{where} is not valid base64: {exc}") from exc


def digit_of(value: object, where: str) -> str:
    """One DTMF digit (0-9 * # A-D); carriers send it as a string."""
    if not isinstance(value, str) or len(value) != 1 or value not in "0123456789*#ABCDabcd":
        raise RemoteProtocolError(f"{where} must be one DTMF digit, got {value!r:.20}")
    return value.upper()


def pcm16_payload(payload: bytes, what: str = "L16") -> bytes:
    """``payload`` as PCM16 (odd length is a ``RemoteProtocolError``: no sample is half a byte)."""
    if len(payload) % 2:
        raise RemoteProtocolError(f"{what} payload of an odd number of bytes")
    return payload


def digit_pressed(
    container: Mapping[str, Any], where: str, *, duration: bool, blank_is_none: bool = False
) -> DigitPressed:
    """``container["digit"]`` (and, with ``duration``, an optional ``duration`` in ms).

    A null duration is none (so is ``""`` with ``blank_is_none``: Exotel sends
    every scalar as a string); carriers that document no duration (Telnyx,
    Plivo) never read it.
    """
    digit = digit_of(field(container, "digit", where), f"{where}.digit")
    value = container.get("duration") if duration else None
    if value is None or (blank_is_none and value == ""):
        return DigitPressed(digit, None)
    return DigitPressed(digit, number(value, f"{where}.duration"))


def mark_named(doc: Mapping[str, Any]) -> MarkPlayed:
    """A Twilio-style ``mark`` echo: ``{"event":"mark","mark":{"name":…}}``."""
    return MarkPlayed(string(obj(doc, "mark", "mark"), "name", "mark"))


def check_stream_id(doc: Mapping[str, Any], keys: tuple[str, ...], active: str) -> None:
    """A stream id the frame carries (under any of ``keys``) must be the active one.

    Absent is fine: SignalWire and Exotel omit it on some frames (CARRIERS.md §4.3, §5.3).
    """
    sid = next((doc[key] for key in keys if key in doc), None)
    if sid is not None and active and sid != active:
        raise RemoteProtocolError(f"{keys[0]} {sid!r:.60} is not the active {active}")


def check_rate(rate: int, where: str) -> int:
    if rate not in RATES:
        raise RemoteProtocolError(f"{where}: unsupported sample rate {rate} (need one of {RATES})")
    return rate


def check_pcm16(pcm16: bytes) -> None:
    if len(pcm16) % 2:
        raise LocalProtocolError(f"PCM16 has an even number of bytes, got {len(pcm16)}")


# --------------------------------------------------------------------------- state machine


class StreamState(enum.Enum):
    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    ENDED = "ended"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Counters of one socket, for logs and metrics."""

    messages: int
    audio_bytes: int  # PCM16 bytes handed to the leg
    digits: int
    marks: int
    ignored_after_end: int
    unknown: int  # unknown events and tolerated unverified variants (each noted once)
    notes: tuple[str, ...]


Note = Callable[[str], None]
"""Receives each tolerance note once per socket (the edge logs it with the call id)."""


def _no_note(_: str) -> None:
    return None


class CarrierStream:
    """Per-socket order, counters and tolerance notes shared by the carriers.

    Subclasses implement :meth:`_parse` (one frame → events, raising
    :class:`RemoteProtocolError` on a malformed one) and the outbound builders.
    :meth:`receive` enforces the order every carrier has: nothing but
    connect/handshake chatter before the stream starts, nothing after it ends.
    """

    carrier: str = "?"

    def __init__(self, *, note: Note | None = None) -> None:
        self.state = StreamState.AWAITING_START
        self.started: StreamStarted | None = None
        self._note_sink = note or _no_note
        self._noted: dict[str, None] = {}
        self._messages = 0
        self._audio_bytes = 0
        self._digits = 0
        self._marks = 0
        self._ignored_after_end = 0
        self._unknown = 0

    @property
    def sample_rate(self) -> int:
        if self.started is None:
            raise LocalProtocolError("the stream has not started: no rate yet")
        return self.started.sample_rate

    def _inbound_rate(self, what: str) -> int:
        """The leg's rate for a frame that needs it: the peer erred if there is none yet."""
        if self.started is None:
            raise RemoteProtocolError(f"{what} before the stream started")
        return self.started.sample_rate

    def note(self, key: str, message: str) -> None:
        """Accept a tolerated oddity; report it the first time on this socket."""
        self._unknown += 1
        if key not in self._noted:
            self._noted[key] = None
            self._note_sink(f"{self.carrier}: {message}")

    def unknown_event(self, name: str) -> list[StreamEvent]:
        """An event this carrier's docs do not list: skipped, noted once per name."""
        self.note(f"event:{name[:40]}", f"unknown event {name[:40]!r} skipped")
        return []

    def foreign_track(self, media: Mapping[str, Any], accepted: tuple[str, ...]) -> bool:
        """True (and noted) when ``media.track`` is not the caller's: never feed our audio back."""
        track = media.get("track", "inbound")
        if track in accepted:
            return False
        self.note(f"track:{str(track)[:20]}", f"media on track {str(track)[:20]!r} skipped")
        return True

    def receive(self, raw: str | bytes, now: float) -> list[StreamEvent]:
        """Events for one frame (possibly none); ``RemoteProtocolError`` means close."""
        if self.state is StreamState.FAILED:
            raise LocalProtocolError("receive() after a protocol error: close the socket")
        self._messages += 1
        if self.state is StreamState.ENDED:
            self._ignored_after_end += 1
            return []
        try:
            events = self._parse(raw, now)
            for event in events:
                self._apply(event)
        except RemoteProtocolError:
            self.state = StreamState.FAILED
            raise
        return events

    def socket_closed(self) -> list[StreamEvent]:
        """The carrier closed the socket: for carriers without ``stop`` this is the end."""
        if self.state is StreamState.STREAMING:
            self.state = StreamState.ENDED
            return [StreamEnded("socket closed")]
        return []

    def _apply(self, event: StreamEvent) -> None:
        if isinstance(event, StreamStarted):
            if self.state is not StreamState.AWAITING_START:
                raise RemoteProtocolError("second start on one stream")
            self.started = event
            self.state = StreamState.STREAMING
            return
        if self.state is not StreamState.STREAMING:
            raise RemoteProtocolError(f"{type(event).__name__} before the stream started")
        match event:
            case CallerAudio():
                self._audio_bytes += len(event.pcm16)
            case DigitPressed():
                self._digits += 1
            case MarkPlayed():
                self._marks += 1
            case StreamEnded():
                self.state = StreamState.ENDED

    def _parse(self, raw: str | bytes, now: float) -> list[StreamEvent]:
        raise NotImplementedError

    def stats(self) -> StreamStats:
        return StreamStats(
            messages=self._messages,
            audio_bytes=self._audio_bytes,
            digits=self._digits,
            marks=self._marks,
            ignored_after_end=self._ignored_after_end,
            unknown=self._unknown,
            notes=tuple(self._noted),
        )

    # Outbound: every carrier implements these four.
    def audio(self, pcm16: bytes) -> list[Frame]:
        """Frames carrying ``pcm16`` (PCM16 LE at the leg's rate) to the caller."""
        raise NotImplementedError

    def flush_audio(self) -> list[Frame]:
        """Frames for audio held back by the carrier's framing (padded); may be empty."""
        return []

    def mark(self, name: str) -> list[Frame]:
        raise NotImplementedError

    def clear(self) -> list[Frame]:
        raise NotImplementedError


class WholeChunks:
    """Outbound PCM cut into whole chunks of a fixed size, the remainder held back.

    For carriers whose frames have a size rule (Vonage: exactly 20 ms; Exotel:
    100 ms multiples of 320 B). :meth:`tail` pads what is held to the carrier's
    alignment so a mark or the end does not wait for audio that may never come.
    """

    def __init__(self) -> None:
        self._pending = b""

    def cut(self, pcm16: bytes, size: int) -> list[bytes]:
        data = self._pending + pcm16
        whole = len(data) - len(data) % size
        self._pending = data[whole:]
        return [data[i : i + size] for i in range(0, whole, size)]

    def tail(self, align: int) -> bytes | None:
        """What is held, padded with silence to a multiple of ``align``; ``None``: nothing."""
        if not self._pending:
            return None
        padded = self._pending.ljust(-(-len(self._pending) // align) * align, b"\x00")
        self._pending = b""
        return padded

    def drop(self) -> None:
        self._pending = b""


def sid_mark(sid_key: str, sid: str, name: str) -> str:
    """``{"event":"mark","<sid_key>":…,"mark":{"name":…}}`` (SignalWire, Exotel)."""
    return (
        '{"event":"mark","'
        + sid_key
        + '":'
        + quoted(sid)
        + ',"mark":{"name":'
        + quoted(name)
        + "}}"
    )


def sid_clear(sid_key: str, sid: str) -> str:
    """``{"event":"clear","<sid_key>":…}`` (SignalWire, Exotel)."""
    return '{"event":"clear","' + sid_key + '":' + quoted(sid) + "}"


def quoted(text: str) -> str:
    """``text`` as a JSON string literal (quotes included)."""
    return json.dumps(text)
