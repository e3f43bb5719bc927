"""The Twilio side of a Media Streams socket: what Twilio sends, what it accepts.

PROTOCOLS.md §1.2 (messages Twilio sends: numbers as *strings*, ``streamSid``
on everything after ``connected``) and §1.3 (what the app may send, and how
Twilio rejects anything else: binary frames 31950; invalid JSON, unknown
events, missing or extra fields, a foreign ``streamSid`` 31951).

Sans-I/O: :class:`TwilioStreamWriter` numbers and builds the outgoing JSON,
:func:`parse_app_message` judges one incoming frame.
"""

from __future__ import annotations

import binascii
import json
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from phonebridge.errors import RemoteProtocolError

MALFORMED_MESSAGE: Final = 31950  # "Stream - Protocol - Malformed Message": binary frames
INVALID_MESSAGE: Final = 31951  # "Stream - Protocol - Invalid Message"
WEBSOCKET_PROTOCOL_ERROR: Final = 31924  # "Stream - WebSocket - Protocol Error"
HANDSHAKE_ERROR: Final = 31920  # upgrade answered with a status other than 101
URL_SCHEME_NOT_SUPPORTED: Final = 31922  # <Stream url> is not wss://
CONNECTION_TIMEOUT: Final = 31901
CONNECTION_REFUSED: Final = 31902
BUFFER_OVERFLOW: Final = 31931  # more than 10 minutes of audio queued: discarded


class StreamRejectedError(RemoteProtocolError):
    """The app sent something Twilio rejects; ``code`` is Twilio's error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class AppMedia:
    payload: bytes  # raw mu-law


@dataclass(frozen=True, slots=True)
class AppMark:
    name: str


@dataclass(frozen=True, slots=True)
class AppClear:
    pass


AppMessage = AppMedia | AppMark | AppClear

# The exact key sets of §1.3: Twilio rejects missing and extra fields alike.
_SHAPES: Final[dict[str, tuple[frozenset[str], str | None, frozenset[str]]]] = {
    "media": (frozenset({"event", "streamSid", "media"}), "media", frozenset({"payload"})),
    "mark": (frozenset({"event", "streamSid", "mark"}), "mark", frozenset({"name"})),
    "clear": (frozenset({"event", "streamSid"}), None, frozenset()),
}


def parse_app_message(raw: str | bytes, stream_sid: str) -> AppMessage:
    """Judge one frame the app sent as Twilio would; raise :class:`StreamRejectedError`."""
    if not isinstance(raw, str):
        raise StreamRejectedError(MALFORMED_MESSAGE, "binary frame (Twilio accepts JSON text only)")
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise StreamRejectedError(INVALID_MESSAGE, f"invalid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise StreamRejectedError(INVALID_MESSAGE, "message is not a JSON object")
    event = doc.get("event")
    shape = _SHAPES.get(event) if isinstance(event, str) else None
    if shape is None:
        raise StreamRejectedError(INVALID_MESSAGE, f"unknown event {event!r}")
    keys, inner_key, inner_keys = shape
    _exact_keys(doc, keys, str(event))
    if doc["streamSid"] != stream_sid:
        raise StreamRejectedError(
            INVALID_MESSAGE, f"streamSid {doc['streamSid']!r} is not the active stream"
        )
    if inner_key is None:
        return AppClear()
    inner = doc[inner_key]
    if not isinstance(inner, dict):
        raise StreamRejectedError(INVALID_MESSAGE, f"{event}.{inner_key} must be an object")
    _exact_keys(inner, inner_keys, f"{event}.{inner_key}")
    if event == "mark":
        name = inner["name"]
        if not isinstance(name, str):
            raise StreamRejectedError(INVALID_MESSAGE, "mark.name must be a string")
        return AppMark(name)
    payload = inner["payload"]
    if not isinstance(payload, str):
        raise StreamRejectedError(INVALID_MESSAGE, "media.payload must be a base64 string")
    try:
        return AppMedia(binascii.a2b_base64(payload, strict_mode=True))
    except (binascii.Error, ValueError) as exc:
        raise StreamRejectedError(INVALID_MESSAGE, f"media.payload is not base64: {exc}") from exc


def _exact_keys(obj: Mapping[str, Any], expected: frozenset[str], where: str) -> None:
    present = set(obj)
    if present != expected:
        missing = sorted(expected - present)
        extra = sorted(present - expected)
        raise StreamRejectedError(INVALID_MESSAGE, f"{where}: missing {missing}, extra {extra}")


class TwilioStreamWriter:
    """Builds the JSON Twilio sends on one stream, numbering as Twilio does.

    ``sequenceNumber`` counts every message after ``connected`` from 1;
    ``chunk`` counts media messages from 1; all three numbers are strings.
    """

    def __init__(self, stream_sid: str, account_sid: str, call_sid: str) -> None:
        self.stream_sid = stream_sid
        self.account_sid = account_sid
        self.call_sid = call_sid
        self._sequence = 0
        self._chunk = 0

    def _next(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    def connected(self) -> str:
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, custom_parameters: Mapping[str, str]) -> str:
        return json.dumps(
            {
                "event": "start",
                "sequenceNumber": self._next(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": dict(custom_parameters),
                    "mediaFormat": {
                        "encoding": "audio/x-mulaw",
                        "sampleRate": 8000,
                        "channels": 1,
                    },
                },
                "streamSid": self.stream_sid,
            }
        )

    def media(self, mulaw: bytes, timestamp_ms: int) -> str:
        self._chunk += 1
        return json.dumps(
            {
                "event": "media",
                "sequenceNumber": self._next(),
                "media": {
                    "track": "inbound",
                    "chunk": str(self._chunk),
                    "timestamp": str(timestamp_ms),
                    "payload": b64encode(mulaw).decode("ascii"),
                },
                "streamSid": self.stream_sid,
            }
        )

    def dtmf(self, digit: str) -> str:
        return json.dumps(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    def mark(self, name: str) -> str:
        return json.dumps(
            {
                "event": "mark",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )

    def stop(self) -> str:
        return json.dumps(
            {
                "event": "stop",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
            }
        )
