"""SignalWire cXML ``<Stream>`` WebSocket, sans-I/O (CARRIERS.md §4.2-§4.3).

A Twilio clone (camelCase, numbers as strings) with these differences, each
handled here rather than by reusing the Twilio parser (§8.1):

- ``connected.version`` is ``"0.2.0"``;
- ``mediaFormat.encoding`` is ``audio/x-mulaw`` (8 kHz) or **``audio/x-L16``**
  (16 or 24 kHz, asked for with ``codec="L16@16000h"``);
- ``media``, ``mark`` and ``stop`` may carry **no top-level ``streamSid``**
  (the documented examples omit it), so it is optional — when present it
  must be the active one;
- ``stop`` may have no ``stop`` object;
- the app may send ``dtmf`` (tone injection; Twilio has no such message).

**L16 byte order is not documented** (*unverified*, §4.3). SignalWire runs
FreeSWITCH, whose L16 is host order (little-endian on the x86 servers it runs
on); ``l16_big_endian=True`` flips it should a live call prove otherwise (a
known tone is noise in the wrong order). The first L16 ``start`` notes the
assumption once.
"""

from __future__ import annotations

from base64 import b64encode
from typing import Any, Final

from phonebridge.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from phonebridge.audio.pcm import swap16
from phonebridge.errors import LocalProtocolError, RemoteProtocolError
from phonebridge.telephony.stream import (
    CallerAudio,
    CarrierStream,
    Frame,
    Note,
    StreamEnded,
    StreamEvent,
    StreamStarted,
    b64_payload,
    check_pcm16,
    check_rate,
    check_stream_id,
    digit_pressed,
    field,
    load_object,
    mark_named,
    number,
    obj,
    opt_string,
    pcm16_payload,
    quoted,
    sid_clear,
    sid_mark,
    string,
    string_map,
)

MULAW: Final = "audio/x-mulaw"
L16: Final = "audio/x-l16"  # SignalWire writes "audio/x-L16"; compared case-insensitively
MAX_MEDIA_BYTES: Final = 32_000


class SignalWireStream(CarrierStream):
    """One SignalWire ``<Connect><Stream>`` socket."""

    carrier = "signalwire"

    def __init__(self, *, l16_big_endian: bool = False, note: Note | None = None) -> None:
        super().__init__(note=note)
        self.l16_big_endian = l16_big_endian
        self.stream_sid = ""
        self.encoding = ""

    def _parse(self, raw: str | bytes, now: float) -> list[StreamEvent]:
        doc = load_object(raw, self.carrier)
        event = doc["event"]
        if event not in ("connected", "start"):
            check_stream_id(doc, ("streamSid",), self.stream_sid)
        if "sequenceNumber" in doc:
            # A string per the docs; a number is accepted (and noted) like Telnyx's.
            if not isinstance(doc["sequenceNumber"], str):
                self.note("seq-number", "sequenceNumber sent as a number")
            number(doc["sequenceNumber"], f"{event}.sequenceNumber")
        match event:
            case "connected":
                string(doc, "version", "connected")
                return []
            case "start":
                return [self._start(doc)]
            case "media":
                return self._media(doc)
            case "dtmf":
                return [digit_pressed(obj(doc, "dtmf", "dtmf"), "dtmf", duration=True)]
            case "mark":
                return [mark_named(doc)]
            case "stop":
                return [StreamEnded("stop")]
            case other:
                return self.unknown_event(other)

    def _start(self, doc: dict[str, Any]) -> StreamStarted:
        start = obj(doc, "start", "start")
        fmt = obj(start, "mediaFormat", "start")
        encoding = string(fmt, "encoding", "start.mediaFormat").lower()
        rate = check_rate(number(field(fmt, "sampleRate", "start.mediaFormat"), "rate"), "start")
        if (encoding, rate) not in ((MULAW, 8_000), (L16, 16_000), (L16, 24_000)):
            raise RemoteProtocolError(f"unsupported media format {encoding} {rate} Hz")
        if number(fmt.get("channels", 1), "start.mediaFormat.channels") != 1:
            raise RemoteProtocolError("multi-channel stream (mono only)")
        if encoding == L16:
            order = "big" if self.l16_big_endian else "little"
            self.note("l16-order", f"L16 byte order assumed {order}-endian (unverified)")
        self.encoding = encoding
        self.stream_sid = string(start, "streamSid", "start")
        return StreamStarted(
            stream_id=self.stream_sid,
            call_id=string(start, "callSid", "start"),
            sample_rate=rate,
            from_number=opt_string(start, "from", "start"),
            to_number=opt_string(start, "to", "start"),
            parameters=string_map(start.get("customParameters"), "start.customParameters"),
        )

    def _media(self, doc: dict[str, Any]) -> list[StreamEvent]:
        media = obj(doc, "media", "media")
        payload = b64_payload(field(media, "payload", "media"), "media.payload")
        if self.foreign_track(media, ("inbound", "inbound_track")):
            return []
        return [CallerAudio(self._decode(payload), self._inbound_rate("media"))]

    def _decode(self, payload: bytes) -> bytes:
        if self.encoding == MULAW:
            return ulaw_to_pcm16(payload)
        pcm16_payload(payload)
        return swap16(payload) if self.l16_big_endian else payload

    # ------------------------------------------------------------------ outbound (§4.3)

    def audio(self, pcm16: bytes) -> list[Frame]:
        check_pcm16(pcm16)
        frames: list[Frame] = []
        for i in range(0, len(pcm16), MAX_MEDIA_BYTES):
            piece = pcm16[i : i + MAX_MEDIA_BYTES]
            if self.encoding == MULAW:
                wire = pcm16_to_ulaw(piece)
            else:
                wire = swap16(piece) if self.l16_big_endian else piece
            frames.append(
                '{"event":"media","streamSid":'
                + quoted(self.stream_sid)
                + ',"media":{"payload":"'
                + b64encode(wire).decode()
                + '"}}'
            )
        return frames

    def mark(self, name: str) -> list[Frame]:
        return [sid_mark("streamSid", self.stream_sid, name)]

    def clear(self) -> list[Frame]:
        return [sid_clear("streamSid", self.stream_sid)]

    def dtmf(self, digit: str) -> str:
        """Play a tone to the caller (SignalWire-only message)."""
        if len(digit) != 1 or digit not in "0123456789*#ABCD":
            raise LocalProtocolError(f"not one DTMF digit: {digit!r}")
        return (
            '{"event":"dtmf","streamSid":'
            + quoted(self.stream_sid)
            + ',"dtmf":{"digit":'
            + quoted(digit)
            + "}}"
        )
