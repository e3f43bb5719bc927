"""Twilio Media Streams, sans-I/O: parse what Twilio sends, build what we send.

PROTOCOLS.md §1.2 (inbound messages) and §1.3 (outbound messages). Nothing here
touches a socket or a clock: :class:`MediaStreamProtocol` takes one text frame
and the caller's ``now`` and returns a typed event (or ``None`` when the frame
is to be ignored); the builders return the JSON text to send.

Decisions this module makes (the wire leaves them open):

- **Inbound parsing is strict on what §1.2 documents and lenient on the rest.**
  A documented field that is missing or has the wrong type (``sequenceNumber``,
  ``chunk`` and ``timestamp`` must be decimal *strings*) is a
  :class:`RemoteProtocolError`; an extra field is ignored, because Twilio adds
  fields over time and a bridge that drops live calls on a new field is worse
  than one that ignores it.
- **``connected`` may be missing.** It carries nothing the call needs (identity
  arrives in ``start``), so a ``start`` without it is accepted and
  :attr:`StreamStats.saw_connected` says so. A ``connected`` after anything else
  is an error: it would mean a confused peer.
- **Media, DTMF or mark before ``start`` is an error**, not ignored: Twilio
  always sends ``start`` first, so such a peer is not Twilio, and the socket has
  not been bound to a call yet (nothing could be done with the audio anyway).
- **An unknown event name is skipped and counted** (by the stream, not the
  parser: :func:`parse_message` raises :class:`UnknownEventError` for it).
  Twilio adds events over time (``dtmf`` arrived years after ``media``), and
  a bridge that drops every live call the day a new one ships is worse than
  one that skips a message it cannot use. The message must still be a JSON
  object with a string ``event``, and a ``streamSid`` on it, if any, must be
  the active one.
- **A second ``stop`` is ignored and counted; anything after ``stop`` too.**
  The stream is over; the hang-up path must not fail on a stray frame.
- **Floods are counted, not judged.** :meth:`MediaStreamProtocol.stats` reports
  how far the received audio runs ahead of wall time; the caller decides when
  that is abuse (a real Twilio stream stays within a few frames).

The outbound builders are on the hot path (50 messages per second per call),
so they concatenate string pieces (names escaped by the C JSON string encoder)
instead of building dicts for :func:`json.dumps`: 0.9 µs against 5.4 µs per
frame (bench/bench_twilio.py; parsing an inbound media message costs ~9 µs).
They emit exactly the fields §1.3 lists: Twilio rejects extra fields.
"""

from __future__ import annotations

import binascii
import enum
import json
from base64 import b64encode
from collections.abc import Callable
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from types import MappingProxyType
from typing import Any, Final

from phonebridge.errors import LocalProtocolError, RemoteProtocolError
from phonebridge.telephony.twilio.events import (
    Connected,
    Dtmf,
    Mark,
    Media,
    Start,
    Stop,
    TwilioEvent,
)

MAX_MESSAGE_CHARS: Final = 64 * 1024
"""Largest text frame we parse; a real one is ~300 characters (``start`` a bit more)."""

MAX_MEDIA_PAYLOAD_BYTES: Final = 8_000
"""Largest decoded ``media`` payload accepted: 1 s of audio (Twilio sends 160 bytes)."""

_MAX_PAYLOAD_BASE64_CHARS: Final = 4 * ((MAX_MEDIA_PAYLOAD_BYTES + 2) // 3)
_MAX_WIRE_NUMBER_DIGITS: Final = 18  # keeps int() cheap and the value in int64

MULAW_ENCODING: Final = "audio/x-mulaw"
MULAW_SAMPLE_RATE: Final = 8_000
_MULAW_BYTES_PER_MS: Final = MULAW_SAMPLE_RATE // 1000


# --------------------------------------------------------------------------- parsing


def parse_message(raw: str | bytes) -> TwilioEvent:
    """Parse one WebSocket frame from Twilio into a typed event.

    Raises :class:`RemoteProtocolError` (never anything else) when the frame is
    binary, not JSON, an unknown event, or misses a documented field.
    """
    if not isinstance(raw, str):
        raise RemoteProtocolError("binary frame on a Twilio media stream (only JSON text)")
    if len(raw) > MAX_MESSAGE_CHARS:
        raise RemoteProtocolError(f"message of {len(raw)} chars exceeds {MAX_MESSAGE_CHARS}")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise RemoteProtocolError(f"invalid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise RemoteProtocolError(f"message is a JSON {type(doc).__name__}, not an object")
    event = doc.get("event")
    if not isinstance(event, str):
        raise RemoteProtocolError(f"event must be a string, got {event!r}")
    parser = _PARSERS.get(event)
    if parser is None:
        raise UnknownEventError(event, doc.get("streamSid"))
    return parser(doc)


class UnknownEventError(RemoteProtocolError):
    """A well-formed message whose ``event`` §1.2 does not list (maybe a newer one)."""

    def __init__(self, event: str, stream_sid: object) -> None:
        super().__init__(f"unknown event {event[:40]!r}")
        self.event = event
        self.stream_sid = stream_sid


def _field(obj: dict[str, Any], key: str, where: str) -> Any:
    try:
        return obj[key]
    except KeyError:
        raise RemoteProtocolError(f"{where}: missing {key!r}") from None


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    value = _field(obj, key, where)
    if not isinstance(value, str):
        raise RemoteProtocolError(f"{where}.{key} must be a string, got {type(value).__name__}")
    return value


def _wire_number(obj: dict[str, Any], key: str, where: str) -> int:
    """A non-negative integer sent as a decimal string (§1.2)."""
    value = _str(obj, key, where)
    if not (value.isascii() and value.isdigit() and len(value) <= _MAX_WIRE_NUMBER_DIGITS):
        raise RemoteProtocolError(f"{where}.{key} must be a decimal string, got {value!r}")
    return int(value)


def _int(obj: dict[str, Any], key: str, where: str) -> int:
    value = _field(obj, key, where)
    # bool is an int subclass; JSON true is not a sample rate.
    if not isinstance(value, int) or isinstance(value, bool):
        raise RemoteProtocolError(f"{where}.{key} must be an integer, got {value!r}")
    return value


def _obj(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = _field(obj, key, where)
    if not isinstance(value, dict):
        raise RemoteProtocolError(f"{where}.{key} must be an object")
    return value


def _parse_connected(doc: dict[str, Any]) -> Connected:
    return Connected(
        protocol=_str(doc, "protocol", "connected"), version=_str(doc, "version", "connected")
    )


def _parse_start(doc: dict[str, Any]) -> Start:
    start = _obj(doc, "start", "start")
    stream_sid = _str(start, "streamSid", "start")
    top_sid = doc.get("streamSid", stream_sid)
    if top_sid != stream_sid:
        raise RemoteProtocolError("start: top-level streamSid differs from start.streamSid")
    tracks = _field(start, "tracks", "start")
    if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
        raise RemoteProtocolError("start.tracks must be a list of strings")
    # Twilio always sends customParameters; an absent one means "no <Parameter>s".
    params = start.get("customParameters", {})
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise RemoteProtocolError("start.customParameters must map strings to strings")
    media_format = _obj(start, "mediaFormat", "start")
    return Start(
        sequence_number=_wire_number(doc, "sequenceNumber", "start"),
        stream_sid=stream_sid,
        account_sid=_str(start, "accountSid", "start"),
        call_sid=_str(start, "callSid", "start"),
        tracks=tuple(tracks),
        custom_parameters=MappingProxyType(dict(params)),
        encoding=_str(media_format, "encoding", "start.mediaFormat"),
        sample_rate=_int(media_format, "sampleRate", "start.mediaFormat"),
        channels=_int(media_format, "channels", "start.mediaFormat"),
    )


def _parse_media(doc: dict[str, Any]) -> Media:
    media = _obj(doc, "media", "media")
    encoded = _str(media, "payload", "media")
    if len(encoded) > _MAX_PAYLOAD_BASE64_CHARS:
        raise RemoteProtocolError(f"media.payload exceeds {MAX_MEDIA_PAYLOAD_BYTES} bytes")
    try:
        payload = binascii.a2b_base64(encoded, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise RemoteProtocolError(f"media.payload is not valid base64: {exc}") from exc
    # The length check above is a cheap guard before decoding; base64 rounds up
    # to 3-byte groups, so it lets up to two bytes too many through.
    if len(payload) > MAX_MEDIA_PAYLOAD_BYTES:
        raise RemoteProtocolError(f"media.payload exceeds {MAX_MEDIA_PAYLOAD_BYTES} bytes")
    return Media(
        sequence_number=_wire_number(doc, "sequenceNumber", "media"),
        stream_sid=_str(doc, "streamSid", "media"),
        track=_str(media, "track", "media"),
        chunk=_wire_number(media, "chunk", "media"),
        timestamp_ms=_wire_number(media, "timestamp", "media"),
        payload=payload,
    )


def _parse_dtmf(doc: dict[str, Any]) -> Dtmf:
    dtmf = _obj(doc, "dtmf", "dtmf")
    digit = _str(dtmf, "digit", "dtmf")
    if not digit:
        raise RemoteProtocolError("dtmf.digit is empty")
    return Dtmf(
        sequence_number=_wire_number(doc, "sequenceNumber", "dtmf"),
        stream_sid=_str(doc, "streamSid", "dtmf"),
        track=_str(dtmf, "track", "dtmf"),
        digit=digit,
    )


def _parse_mark(doc: dict[str, Any]) -> Mark:
    return Mark(
        sequence_number=_wire_number(doc, "sequenceNumber", "mark"),
        stream_sid=_str(doc, "streamSid", "mark"),
        name=_str(_obj(doc, "mark", "mark"), "name", "mark"),
    )


def _parse_stop(doc: dict[str, Any]) -> Stop:
    stop = _obj(doc, "stop", "stop")
    return Stop(
        sequence_number=_wire_number(doc, "sequenceNumber", "stop"),
        stream_sid=_str(doc, "streamSid", "stop"),
        account_sid=_str(stop, "accountSid", "stop"),
        call_sid=_str(stop, "callSid", "stop"),
    )


_PARSERS: Final[dict[str, Callable[[dict[str, Any]], TwilioEvent]]] = {
    "connected": _parse_connected,
    "start": _parse_start,
    "media": _parse_media,
    "dtmf": _parse_dtmf,
    "mark": _parse_mark,
    "stop": _parse_stop,
}


# --------------------------------------------------------------------------- per-socket state


class StreamState(enum.Enum):
    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Counters of one socket, for logs, metrics and flood decisions."""

    messages: int
    media_frames: int
    media_bytes: int
    dtmf_digits: int
    marks: int
    saw_connected: bool
    duplicate_stops: int
    ignored_after_stop: int
    sequence_anomalies: int  # sequenceNumber not previous + 1 (counted, never fatal)
    unknown_events: int  # well-formed messages with an event name §1.2 does not list
    audio_lead_ms: float  # received audio minus wall time since the first media, now
    max_audio_lead_ms: float  # the largest lead seen: a flood shows here


class MediaStreamProtocol:
    """One Twilio media socket: order, identity and counters (§1.2).

    Feed every text frame to :meth:`receive`; it returns the event, or ``None``
    for a frame to ignore (after ``stop``), and raises
    :class:`RemoteProtocolError` when the peer breaks the protocol — then close
    the socket. ``now`` is any monotonic clock in seconds.
    """

    def __init__(self) -> None:
        self.state = StreamState.AWAITING_START
        self.start: Start | None = None
        self._messages = 0
        self._media_frames = 0
        self._media_bytes = 0
        self._dtmf = 0
        self._marks = 0
        self._saw_connected = False
        self._duplicate_stops = 0
        self._ignored_after_stop = 0
        self._sequence_anomalies = 0
        self.unknown_events = 0
        self._last_sequence: int | None = None
        self._first_media_at: float | None = None
        self._max_lead_ms = 0.0

    @property
    def stream_sid(self) -> str | None:
        return self.start.stream_sid if self.start else None

    def receive(self, raw: str | bytes, now: float) -> TwilioEvent | None:
        if self.state is StreamState.FAILED:
            raise LocalProtocolError("receive() after a protocol error: close the socket")
        self._messages += 1
        try:
            try:
                event = parse_message(raw)
            except UnknownEventError as exc:
                self._skip_unknown(exc)
                return None
            return self._apply(event, now)
        except RemoteProtocolError:
            self.state = StreamState.FAILED
            raise

    def _skip_unknown(self, exc: UnknownEventError) -> None:
        active = self.stream_sid
        if active is not None and exc.stream_sid is not None and exc.stream_sid != active:
            raise RemoteProtocolError(
                f"{exc.event[:40]!r} for streamSid {exc.stream_sid!r}, not the active {active!r}"
            ) from exc
        self.unknown_events += 1

    def _apply(self, event: TwilioEvent, now: float) -> TwilioEvent | None:
        if isinstance(event, Connected):
            # Skipped unknown events do not count: a new event Twilio sends
            # first must not make the documented first message an error.
            if self._messages - self.unknown_events != 1:
                raise RemoteProtocolError("'connected' after other messages")
            self._saw_connected = True
            return event
        if self.state is StreamState.STOPPED:
            if isinstance(event, Stop):
                self._duplicate_stops += 1
            else:
                self._ignored_after_stop += 1
            return None
        if isinstance(event, Start):
            if self.state is not StreamState.AWAITING_START:
                raise RemoteProtocolError("second 'start' on one stream")
            self._check_format(event)
            self.start = event
            self.state = StreamState.STREAMING
            self._last_sequence = event.sequence_number
            return event
        if self.start is None:
            raise RemoteProtocolError(f"{type(event).__name__.lower()!r} before 'start'")
        if event.stream_sid != self.start.stream_sid:
            raise RemoteProtocolError(
                f"streamSid {event.stream_sid!r} is not the active {self.start.stream_sid!r}"
            )
        self._count_sequence(event.sequence_number)
        match event:
            case Media():
                self._count_media(event, now)
            case Dtmf():
                self._dtmf += 1
            case Mark():
                self._marks += 1
            case Stop():
                self.state = StreamState.STOPPED
        return event

    @staticmethod
    def _check_format(start: Start) -> None:
        # The whole audio path assumes 8 kHz mono mu-law; anything else would be noise.
        if (start.encoding, start.sample_rate, start.channels) != (
            MULAW_ENCODING,
            MULAW_SAMPLE_RATE,
            1,
        ):
            raise RemoteProtocolError(
                f"unsupported media format {start.encoding} {start.sample_rate} Hz "
                f"x{start.channels} (need {MULAW_ENCODING} 8000 Hz mono)"
            )

    def _count_sequence(self, number: int) -> None:
        if self._last_sequence is not None and number != self._last_sequence + 1:
            self._sequence_anomalies += 1
        self._last_sequence = number

    def _count_media(self, media: Media, now: float) -> None:
        if self._first_media_at is None:
            self._first_media_at = now
        self._media_frames += 1
        self._media_bytes += len(media.payload)
        self._max_lead_ms = max(self._max_lead_ms, self._lead_ms(now))

    def _lead_ms(self, now: float) -> float:
        if self._first_media_at is None:
            return 0.0
        # The first frame is "due" when it arrives, so a paced stream sits at ~+20 ms.
        received_ms = self._media_bytes / _MULAW_BYTES_PER_MS
        return received_ms - (now - self._first_media_at) * 1000.0

    def stats(self, now: float) -> StreamStats:
        return StreamStats(
            messages=self._messages,
            media_frames=self._media_frames,
            media_bytes=self._media_bytes,
            dtmf_digits=self._dtmf,
            marks=self._marks,
            saw_connected=self._saw_connected,
            duplicate_stops=self._duplicate_stops,
            ignored_after_stop=self._ignored_after_stop,
            sequence_anomalies=self._sequence_anomalies,
            unknown_events=self.unknown_events,
            audio_lead_ms=self._lead_ms(now),
            max_audio_lead_ms=self._max_lead_ms,
        )


# --------------------------------------------------------------------------- outbound (§1.3)


def _quoted(text: str) -> str:
    """``text`` as a JSON string literal (quotes included), via the C encoder."""
    return encode_basestring_ascii(text)


def media_message(stream_sid: str, mulaw: bytes) -> str:
    """``{"event":"media","streamSid":..,"media":{"payload":<base64 mu-law>}}``."""
    return (
        '{"event":"media","streamSid":'
        + _quoted(stream_sid)
        + ',"media":{"payload":"'
        + b64encode(mulaw).decode("ascii")
        + '"}}'
    )


def mark_message(stream_sid: str, name: str) -> str:
    """``{"event":"mark","streamSid":..,"mark":{"name":..}}``: echoed once played."""
    return (
        '{"event":"mark","streamSid":'
        + _quoted(stream_sid)
        + ',"mark":{"name":'
        + _quoted(name)
        + "}}"
    )


def clear_message(stream_sid: str) -> str:
    """``{"event":"clear","streamSid":..}``: empty Twilio's playback buffer."""
    return '{"event":"clear","streamSid":' + _quoted(stream_sid) + "}"
