"""Telnyx media streaming WebSocket, sans-I/O (CARRIERS.md §1.2-§1.4).

Telnyx → app: ``connected`` (``version``; with ``stream_auth_token`` also the
token), ``start`` (``stream_id`` at the top level, ``start.media_format`` with
a *numeric* ``sample_rate``), ``media`` (``sequence_number``, ``chunk`` and
``timestamp`` as strings), ``dtmf``, ``mark``, ``error``, ``stop``. Keys are
snake_case.

Decisions:

- **Codecs in**: ``PCMU``/``PCMA`` (8 kHz) and ``L16`` — which is
  **big-endian** (RTP, §8.4) and is swapped here. Anything else (G722, OPUS,
  AMR-WB: what Telnyx falls back to when it cannot transcode) is refused at
  ``start``: decoding it would be noise.
- **The leg's rate is the inbound rate** (what ``start`` announces), so a PSTN
  call that Telnyx keeps at 8 kHz PCMU stays on the cheap narrowband path.
  App audio goes out in the codec and rate we asked for in
  ``stream_bidirectional_codec``/``…_sampling_rate`` (L16 16 kHz by default):
  when that differs from the leg's rate it is converted here.
- **Outbound frames are 20 ms … 30 s** (§1.4): audio shorter than 20 ms is held
  until more arrives; :meth:`flush_audio` and :meth:`mark` pad it with silence.
  No ``stream_id`` is needed on outbound messages.
- Only ``bidirectional_mode=rtp`` plays our ``media`` (in ``mp3`` mode Telnyx
  drops it silently, §8.6): :mod:`.callcontrol` always asks for ``rtp``.
- *Unverified* shapes are accepted and noted once: ``chunk``/``timestamp`` as
  numbers, ``track`` spelled ``inbound_track``, ``sample_rate`` as a string,
  ``custom_parameters`` as a list of ``{name, value}``, the inner fields of
  ``stop`` and ``error``.
"""

from __future__ import annotations

from base64 import b64encode
from typing import Any, Final

from phonebridge.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from phonebridge.audio.pcm import RatioResampler, alaw_to_pcm16, swap16
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
    digit_pressed,
    field,
    load_object,
    mark_named,
    number,
    obj,
    opt_string,
    pcm16_payload,
    quoted,
    string,
    string_map,
)

AUTH_TOKEN_HEADER: Final = "x-telnyx-streaming-auth-token"  # noqa: S105 (a header name)
OUT_CODECS: Final = ("L16", "PCMU")
MIN_OUT_MS: Final = 20
MAX_OUT_MS: Final = 1_000  # Telnyx allows 30 s; a second keeps clear() responsive


class TelnyxStream(CarrierStream):
    """One Telnyx media socket. ``out_codec``/``out_rate`` = what we asked Telnyx for."""

    carrier = "telnyx"

    def __init__(
        self, *, out_codec: str = "L16", out_rate: int = 16_000, note: Note | None = None
    ) -> None:
        super().__init__(note=note)
        if out_codec not in OUT_CODECS:
            raise LocalProtocolError(f"outbound codec must be one of {OUT_CODECS}")
        if out_codec == "PCMU" and out_rate != 8_000:
            raise LocalProtocolError("PCMU is 8 kHz only")
        self.out_codec = out_codec
        self.out_rate = check_rate(out_rate, "outbound") if out_codec == "L16" else 8_000
        self.encoding = ""
        self.connected_token: str | None = None  # the token echoed in ``connected``, if any
        self._out: RatioResampler | None = None
        self._pending = b""  # outbound PCM16 LE at out_rate, shorter than 20 ms

    # ------------------------------------------------------------------ inbound

    def _parse(self, raw: str | bytes, now: float) -> list[StreamEvent]:
        doc = load_object(raw, self.carrier)
        match doc["event"]:
            case "connected":
                token = doc.get(AUTH_TOKEN_HEADER)
                self.connected_token = token if isinstance(token, str) else None
                return []
            case "start":
                return [self._start(doc)]
            case "media":
                return self._media(doc)
            case "dtmf":
                return [digit_pressed(obj(doc, "dtmf", "dtmf"), "dtmf", duration=False)]
            case "mark":
                return [mark_named(doc)]
            case "error":
                self.note("error", f"error event: {str(doc.get('payload', doc))[:200]}")
                return []
            case "stop":
                return [StreamEnded("stop")]
            case other:
                return self.unknown_event(other)

    def _start(self, doc: dict[str, Any]) -> StreamStarted:
        start = obj(doc, "start", "start")
        fmt = obj(start, "media_format", "start")
        rate_value = field(fmt, "sample_rate", "start.media_format")
        if isinstance(rate_value, str):
            self.note("rate-string", "start.media_format.sample_rate sent as a string")
        rate = check_rate(number(rate_value, "start.media_format.sample_rate"), "start")
        encoding = string(fmt, "encoding", "start.media_format").upper()
        if encoding not in ("PCMU", "PCMA", "L16"):
            raise RemoteProtocolError(f"unsupported stream codec {encoding!r} (PCMU, PCMA, L16)")
        if encoding != "L16" and rate != 8_000:
            raise RemoteProtocolError(f"{encoding} at {rate} Hz (G.711 is 8 kHz)")
        channels = fmt.get("channels", 1)
        if number(channels, "start.media_format.channels") != 1:
            raise RemoteProtocolError(f"{channels} channels (mono only)")
        self.encoding = encoding
        if rate != self.out_rate:
            self._out = RatioResampler(rate, self.out_rate)
        return StreamStarted(
            stream_id=string(doc, "stream_id", "start"),
            call_id=string(start, "call_control_id", "start"),
            sample_rate=rate,
            from_number=opt_string(start, "from", "start"),
            to_number=opt_string(start, "to", "start"),
            parameters=self._custom_parameters(start.get("custom_parameters")),
        )

    def _custom_parameters(self, value: object) -> dict[str, str]:
        if isinstance(value, list):
            # Call Control *sends* a list of {name, value}; whether start echoes it
            # as a list or (as documented) an object is unverified.
            self.note("params-list", "start.custom_parameters as a list")
            out: dict[str, str] = {}
            for item in value:
                if not isinstance(item, dict):
                    raise RemoteProtocolError("start.custom_parameters items must be objects")
                out[string(item, "name", "custom_parameters")] = string(
                    item, "value", "custom_parameters"
                )
            return out
        return string_map(value, "start.custom_parameters")

    def _media(self, doc: dict[str, Any]) -> list[StreamEvent]:
        media = obj(doc, "media", "media")
        payload = b64_payload(field(media, "payload", "media"), "media.payload")
        if media.get("track") == "inbound_track":
            self.note("track-suffix", "media.track spelled 'inbound_track'")
        elif self.foreign_track(media, ("inbound",)):
            return []
        for key in ("chunk", "timestamp"):
            if isinstance(media.get(key), int):
                self.note(f"{key}-number", f"media.{key} sent as a number")
        if self.encoding == "L16":
            pcm = swap16(pcm16_payload(payload))
        elif self.encoding == "PCMA":
            pcm = alaw_to_pcm16(payload)
        else:
            pcm = ulaw_to_pcm16(payload)
        return [CallerAudio(pcm, self._inbound_rate("media"))]

    # ------------------------------------------------------------------ outbound (§1.4)

    def audio(self, pcm16: bytes) -> list[Frame]:
        check_pcm16(pcm16)
        if self._out is not None:
            pcm16 = self._out.push(pcm16)
        self._pending += pcm16
        if len(self._pending) < self._bytes(MIN_OUT_MS):
            return []
        return self._drain()

    def flush_audio(self) -> list[Frame]:
        if not self._pending:
            return []
        short = self._bytes(MIN_OUT_MS) - len(self._pending)
        if short > 0:
            self._pending += b"\x00" * short
        return self._drain()

    def _drain(self) -> list[Frame]:
        frames: list[Frame] = []
        limit = self._bytes(MAX_OUT_MS)
        while self._pending:
            piece, self._pending = self._pending[:limit], self._pending[limit:]
            frames.append(media_message(self._encode(piece)))
        return frames

    def _encode(self, pcm16: bytes) -> bytes:
        return swap16(pcm16) if self.out_codec == "L16" else pcm16_to_ulaw(pcm16)

    def _bytes(self, ms: int) -> int:
        return self.out_rate * ms // 1000 * 2

    def mark(self, name: str) -> list[Frame]:
        return [*self.flush_audio(), '{"event":"mark","mark":{"name":' + quoted(name) + "}}"]

    def clear(self) -> list[Frame]:
        self._pending = b""
        return ['{"event":"clear"}']


def media_message(payload: bytes) -> str:
    """``{"event":"media","media":{"payload":…}}`` (no ``stream_id``: §1.4)."""
    return '{"event":"media","media":{"payload":"' + b64encode(payload).decode() + '"}}'
