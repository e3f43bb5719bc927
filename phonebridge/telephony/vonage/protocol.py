"""Vonage Voice API WebSocket, sans-I/O (CARRIERS.md §3.2-§3.4).

Unlike the JSON-only carriers, Vonage sends **binary audio and JSON text** on
one socket (§8.3):

- first a text ``{"event":"websocket:connected","content-type":"audio/l16;rate=16000",
  …}`` carrying the NCCO endpoint's ``headers`` **flattened at the top level**;
- then binary frames of PCM16 little-endian, **exactly 20 ms each** (640 B at
  16 kHz);
- text events ``websocket:dtmf`` (``digit`` string, ``duration`` number),
  ``websocket:cleared`` (ack of ``clear``), ``websocket:notify`` (echo of our
  ``notify`` payload once the audio queued before it has played).

There is no ``stop``: the socket closing is the end of the call leg, and
there is no stream id: one socket is one leg (:mod:`.ncco` puts the call's
``uuid`` into the headers, which is what :attr:`StreamStarted.call_id` reads).

App → Vonage: binary frames **each exactly one 20 ms frame** — :meth:`audio`
cuts and holds the remainder, :meth:`flush_audio` pads it with silence —
``{"action":"clear"}``, and ``{"action":"notify","payload":{"name":…}}`` for a
mark.

Tolerated and noted once: an inbound binary frame that is not 20 ms (the rule
is documented for Vonage's frames but a different size is still audio), a
``notify`` echo without our ``name``, unknown events. An odd-length binary
frame, binary before ``websocket:connected`` or a second ``websocket:connected``
are errors.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from phonebridge.errors import RemoteProtocolError
from phonebridge.telephony.stream import (
    MAX_PAYLOAD_BYTES,
    CallerAudio,
    CarrierStream,
    Frame,
    MarkPlayed,
    Note,
    PlaybackCleared,
    StreamEvent,
    StreamStarted,
    WholeChunks,
    check_pcm16,
    check_rate,
    digit_pressed,
    load_object,
    string,
)

FRAME_MS: Final = 20
CONTENT_TYPE: Final = re.compile(r"audio/l16;\s*rate=(\d{4,5})", re.IGNORECASE)
CALL_UUID_HEADER: Final = "call_uuid"
"""The NCCO header our answer sets to the call's ``uuid`` (echoed in ``websocket:connected``)."""


def content_type(rate: int) -> str:
    return f"audio/l16;rate={rate}"


def e164(number_text: str) -> str:
    """Vonage writes numbers without ``+`` (§3.1): ``442079460000`` → ``+442079460000``."""
    text = number_text.strip()
    if text.isascii() and text.isdigit():
        return "+" + text
    return text


class VonageStream(CarrierStream):
    """One Vonage ``websocket`` endpoint (a call leg, not a fork)."""

    carrier = "vonage"

    def __init__(self, *, note: Note | None = None) -> None:
        super().__init__(note=note)
        self._chunks = WholeChunks()

    def _parse(self, raw: str | bytes, now: float) -> list[StreamEvent]:
        if isinstance(raw, bytes):
            return self._binary(raw)
        doc = load_object(raw, self.carrier)
        match doc["event"]:
            case "websocket:connected":
                return [self._connected(doc)]
            case "websocket:dtmf":
                return [digit_pressed(doc, "websocket:dtmf", duration=True)]
            case "websocket:cleared":
                return [PlaybackCleared()]
            case "websocket:notify":
                payload = doc.get("payload")
                name = payload.get("name") if isinstance(payload, dict) else None
                if not isinstance(name, str):
                    self.note("notify-foreign", "websocket:notify without our mark name")
                    return []
                return [MarkPlayed(name)]
            case other:
                return self.unknown_event(other)

    def _connected(self, doc: dict[str, Any]) -> StreamStarted:
        kind = string(doc, "content-type", "websocket:connected")
        found = CONTENT_TYPE.fullmatch(kind.strip())
        if found is None:
            raise RemoteProtocolError(f"unsupported content-type {kind[:60]!r}")
        rate = check_rate(int(found.group(1)), "websocket:connected")
        # Our NCCO headers come back as top-level keys; nested values (allowed
        # in NCCO headers) are kept as their JSON text.
        params = {
            key: value if isinstance(value, str) else json.dumps(value)
            for key, value in doc.items()
            if key not in ("event", "content-type")
        }
        call_uuid = params.pop(CALL_UUID_HEADER, "")
        return StreamStarted(
            stream_id=call_uuid,
            call_id=call_uuid,
            sample_rate=rate,
            from_number=e164(params.get("from", "")),
            to_number=e164(params.get("to", "")),
            parameters=params,
        )

    def _binary(self, data: bytes) -> list[StreamEvent]:
        if self.started is None:
            raise RemoteProtocolError("binary audio before websocket:connected")
        if len(data) % 2 or len(data) > MAX_PAYLOAD_BYTES:
            raise RemoteProtocolError(f"binary frame of {len(data)} bytes is not PCM16 audio")
        if len(data) != self._frame_bytes:
            self.note("frame-size", f"binary frame of {len(data)} bytes, not one 20 ms frame")
        return [CallerAudio(data, self.sample_rate)]

    @property
    def _frame_bytes(self) -> int:
        return self.sample_rate * FRAME_MS // 1000 * 2

    # ------------------------------------------------------------------ outbound (§3.3)

    def audio(self, pcm16: bytes) -> list[Frame]:
        check_pcm16(pcm16)
        return list(self._chunks.cut(pcm16, self._frame_bytes))

    def flush_audio(self) -> list[Frame]:
        frame = self._chunks.tail(self._frame_bytes)
        return [] if frame is None else [frame]

    def mark(self, name: str) -> list[Frame]:
        notify = json.dumps({"action": "notify", "payload": {"name": name}})
        return [*self.flush_audio(), notify]

    def clear(self) -> list[Frame]:
        self._chunks.drop()
        return ['{"action":"clear"}']
