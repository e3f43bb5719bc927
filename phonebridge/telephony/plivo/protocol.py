"""Plivo audio streaming WebSocket, sans-I/O (CARRIERS.md §2.3-§2.5).

Plivo → app (camelCase, **no ``connected``: ``start`` is first**, §8.3):
``start`` (numeric ``sequenceNumber``, ``start.mediaFormat``, top-level
``extra_headers`` string), ``media`` (``timestamp`` a string, ``chunk`` a
number), ``dtmf``, ``playedStream`` (the checkpoint ``name`` at the top level),
``clearedAudio``. There is **no documented ``stop``**: the socket closing is
the end (:meth:`~phonebridge.telephony.stream.CarrierStream.socket_closed`);
a ``stop`` frame (Plivo's Java stream SDK models one) is honoured and noted, as
are ``playFailed`` and ``error`` (seen only in Plivo Labs' transport).

App → Plivo: ``playAudio`` with ``contentType``/``sampleRate`` declared per
message (L16 little-endian at the leg's rate: 8 or 16 kHz, the only L16 rates
Plivo takes), ``checkpoint`` → ``playedStream``, ``clearAudio`` →
``clearedAudio``, ``sendDTMF``. Audio frames are free-size.

``extra_headers`` is ``k=v`` pairs separated by ``,`` (XML reference) or ``;``
(a doc example): both are split.
"""

from __future__ import annotations

from base64 import b64encode
from typing import Any, Final

from phonebridge.audio.g711 import ulaw_to_pcm16
from phonebridge.errors import LocalProtocolError, RemoteProtocolError
from phonebridge.telephony.stream import (
    CallerAudio,
    CarrierStream,
    Frame,
    MarkPlayed,
    Note,
    PlaybackCleared,
    StreamEnded,
    StreamEvent,
    StreamStarted,
    b64_payload,
    check_pcm16,
    digit_pressed,
    field,
    load_object,
    number,
    obj,
    opt_string,
    pcm16_payload,
    quoted,
    string,
)

L16: Final = "audio/x-l16"
MULAW: Final = "audio/x-mulaw"
MAX_PLAY_BYTES: Final = 32_000  # 1 s at 16 kHz per playAudio: keeps clear() responsive


def parse_extra_headers(text: str) -> dict[str, str]:
    """``"a=1,b=2"`` or ``"a=1;b=2"`` → ``{"a": "1", "b": "2"}``; pieces without ``=`` dropped."""
    out: dict[str, str] = {}
    for piece in text.replace(";", ",").split(","):
        name, sep, value = piece.strip().partition("=")
        if sep and name:
            out[name] = value
    return out


class PlivoStream(CarrierStream):
    """One Plivo ``<Stream bidirectional="true">`` socket."""

    carrier = "plivo"

    def __init__(self, *, note: Note | None = None) -> None:
        super().__init__(note=note)
        self.stream_id = ""
        self.encoding = ""

    def _parse(self, raw: str | bytes, now: float) -> list[StreamEvent]:
        doc = load_object(raw, self.carrier)
        match doc["event"]:
            case "start":
                return [self._start(doc)]
            case "media":
                return self._media(doc)
            case "dtmf":
                return [digit_pressed(obj(doc, "dtmf", "dtmf"), "dtmf", duration=False)]
            case "playedStream":
                return [MarkPlayed(string(doc, "name", "playedStream"))]
            case "clearedAudio":
                return [PlaybackCleared()]
            case "stop":
                self.note("stop", "a 'stop' frame (undocumented; the socket close is the end)")
                return [StreamEnded(opt_string(doc, "reason", "stop") or "stop")]
            case "connected":
                self.note("connected", "a 'connected' frame (undocumented for Plivo)")
                return []
            case "playFailed" | "error" as name:
                self.note(name, f"{name}: {str(doc.get('reason', ''))[:200]}")
                return []
            case other:
                return self.unknown_event(other)

    def _start(self, doc: dict[str, Any]) -> StreamStarted:
        number(field(doc, "sequenceNumber", "start"), "start.sequenceNumber")
        start = obj(doc, "start", "start")
        fmt = obj(start, "mediaFormat", "start")
        encoding = string(fmt, "encoding", "start.mediaFormat").split(";")[0].strip().lower()
        rate = number(field(fmt, "sampleRate", "start.mediaFormat"), "start.sampleRate")
        if encoding not in (L16, MULAW):
            raise RemoteProtocolError(f"unsupported encoding {encoding!r} ({L16}, {MULAW})")
        if rate not in ((8_000, 16_000) if encoding == L16 else (8_000,)):
            raise RemoteProtocolError(f"{encoding} at {rate} Hz is not a Plivo stream format")
        self.encoding = encoding
        self.stream_id = string(start, "streamId", "start")
        headers = doc.get("extra_headers", start.get("extra_headers", ""))
        if not isinstance(headers, str):
            raise RemoteProtocolError("extra_headers must be a string")
        return StreamStarted(
            stream_id=self.stream_id,
            call_id=string(start, "callId", "start"),
            sample_rate=rate,
            from_number=opt_string(start, "from", "start"),
            to_number=opt_string(start, "to", "start"),
            parameters=parse_extra_headers(headers),
        )

    def _media(self, doc: dict[str, Any]) -> list[StreamEvent]:
        media = obj(doc, "media", "media")
        payload = b64_payload(field(media, "payload", "media"), "media.payload")
        if self.foreign_track(media, ("inbound",)):
            return []
        pcm = ulaw_to_pcm16(payload) if self.encoding == MULAW else pcm16_payload(payload)
        return [CallerAudio(pcm, self._inbound_rate("media"))]

    # ------------------------------------------------------------------ outbound (§2.4)

    def audio(self, pcm16: bytes) -> list[Frame]:
        check_pcm16(pcm16)
        return [
            play_audio_message(pcm16[i : i + MAX_PLAY_BYTES], self.sample_rate)
            for i in range(0, len(pcm16), MAX_PLAY_BYTES)
        ]

    def mark(self, name: str) -> list[Frame]:
        return [
            '{"event":"checkpoint","streamId":' + quoted(self.stream_id) + ',"name":'
            f"{quoted(name)}}}"
        ]

    def clear(self) -> list[Frame]:
        return ['{"event":"clearAudio","streamId":' + quoted(self.stream_id) + "}"]

    @staticmethod
    def send_dtmf(digits: str) -> str:
        if not digits or any(d not in "0123456789*#ABCD" for d in digits):
            raise LocalProtocolError(f"not DTMF digits: {digits!r}")
        return '{"event":"sendDTMF","dtmf":' + quoted(digits) + "}"


def play_audio_message(pcm16: bytes, rate: int) -> str:
    """``playAudio`` of L16 little-endian at ``rate`` (8000 or 16000)."""
    return (
        '{"event":"playAudio","media":{"contentType":"audio/x-l16","sampleRate":'
        + str(rate)
        + ',"payload":"'
        + b64encode(pcm16).decode()
        + '"}}'
    )
