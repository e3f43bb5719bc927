"""Exotel AgentStream (Voicebot applet) WebSocket, sans-I/O (CARRIERS.md §5.3-§5.5).

Exotel → app: ``connected``, ``start``, ``media`` (~100 ms each), ``dtmf``,
``mark``, ``stop`` (with ``reason`` ``stopped``/``callended``). **Every scalar
is a string** (``sample_rate`` too). Audio is "slin": PCM16 little-endian at
8, 16 or 24 kHz (chosen by the URL's ``sample-rate`` query parameter).

**Key casing is ambiguous** (§5.3): the developer docs write snake_case
(``stream_sid``, ``call_sid``, ``custom_parameters``, ``media_format``),
Exotel's own sample repo camelCase. Every key is read in both spellings; the
first camelCase one is noted, and our outbound messages use the casing
Exotel used in ``start`` (so a peer that parses only its own spelling is
answered in it).

App → Exotel chunk rules (§5.4): each ``media`` payload is a **multiple of
320 bytes**, at least 3 200 B, at most 100 KB — shorter chunks leave gaps,
the platform waits 20 ms after a short tail. :meth:`audio` holds audio until a
whole chunk (:func:`chunk_bytes`: 100 ms, never under 3 200 B) is there;
:meth:`flush_audio` (and :meth:`mark`) pad the tail to a multiple of 320 B.
Outbound ``media`` also carries ``chunk``/``timestamp``/``sequenceNumber``
strings, which Exotel's sample sends and says some streams need
(*unverified*, cheap).
"""

from __future__ import annotations

from base64 import b64encode
from typing import Any, Final

from phonebridge.errors import RemoteProtocolError
from phonebridge.telephony.stream import (
    CallerAudio,
    CarrierStream,
    Frame,
    Note,
    StreamEnded,
    StreamEvent,
    StreamStarted,
    WholeChunks,
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

ALIGN: Final = 320
MIN_CHUNK: Final = 3_200
MAX_CHUNK: Final = 102_400


def chunk_bytes(rate: int) -> int:
    """Outbound chunk size: 100 ms at ``rate``, at least 3 200 B, a multiple of 320 B."""
    size = max(MIN_CHUNK, rate * 2 // 10)
    return -(-size // ALIGN) * ALIGN


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.title() for word in rest)


class ExotelStream(CarrierStream):
    """One Exotel Voicebot socket."""

    carrier = "exotel"

    def __init__(self, *, note: Note | None = None) -> None:
        super().__init__(note=note)
        self.stream_sid = ""
        self.camel = False  # Exotel used camelCase in start: answer in it
        self._chunks = WholeChunks()
        self._sent_chunks = 0
        self._sent_bytes = 0

    def _key(self, obj_: dict[str, Any], snake: str) -> tuple[str, str]:
        camel = _camel(snake)
        if camel != snake and camel in obj_ and snake not in obj_:
            self.note("camel", f"camelCase keys ({camel})")
        return (snake, camel)

    def _parse(self, raw: str | bytes, now: float) -> list[StreamEvent]:
        doc = load_object(raw, self.carrier)
        event = doc["event"]
        if event not in ("connected", "start"):
            check_stream_id(doc, ("stream_sid", "streamSid"), self.stream_sid)
        match event:
            case "connected":
                return []
            case "start":
                return [self._start(doc)]
            case "media":
                media = obj(doc, "media", "media")
                payload = b64_payload(field(media, "payload", "media"), "media.payload")
                return [CallerAudio(pcm16_payload(payload, "PCM16"), self._inbound_rate("media"))]
            case "dtmf":
                dtmf = obj(doc, "dtmf", "dtmf")
                return [digit_pressed(dtmf, "dtmf", duration=True, blank_is_none=True)]
            case "mark":
                return [mark_named(doc)]
            case "stop":
                stop = doc.get("stop")
                reason = stop.get("reason") if isinstance(stop, dict) else None
                return [StreamEnded(reason if isinstance(reason, str) and reason else "stop")]
            case other:
                return self.unknown_event(other)

    def _start(self, doc: dict[str, Any]) -> StreamStarted:
        start = obj(doc, "start", "start")
        self.camel = "streamSid" in start and "stream_sid" not in start
        fmt = obj(start, self._key(start, "media_format"), "start")
        rate_value = field(fmt, self._key(fmt, "sample_rate"), "start.media_format")
        rate = check_rate(number(rate_value, "start.media_format.sample_rate"), "start")
        encoding = fmt.get("encoding", "audio/x-raw")
        if encoding not in ("audio/x-raw", "slin", "raw"):
            self.note("encoding", f"media_format.encoding {str(encoding)[:30]!r} read as PCM16")
        bits = fmt.get("bit_rate", fmt.get("bitRate", "16"))
        if number(bits, "start.media_format.bit_rate") != 16:
            raise RemoteProtocolError(f"{bits}-bit audio (16-bit PCM only)")
        self.stream_sid = string(start, self._key(start, "stream_sid"), "start")
        return StreamStarted(
            stream_id=self.stream_sid,
            call_id=opt_string(start, self._key(start, "call_sid"), "start"),
            sample_rate=rate,
            from_number=opt_string(start, "from", "start"),
            to_number=opt_string(start, "to", "start"),
            parameters=string_map(
                start.get("custom_parameters", start.get("customParameters")),
                "start.custom_parameters",
            ),
        )

    # ------------------------------------------------------------------ outbound (§5.4)

    @property
    def _sid_key(self) -> str:
        return "streamSid" if self.camel else "stream_sid"

    def audio(self, pcm16: bytes) -> list[Frame]:
        check_pcm16(pcm16)
        return [self._media(c) for c in self._chunks.cut(pcm16, chunk_bytes(self.sample_rate))]

    def flush_audio(self) -> list[Frame]:
        tail = self._chunks.tail(ALIGN)
        return [] if tail is None else [self._media(tail)]

    def _media(self, pcm16: bytes) -> str:
        self._sent_chunks += 1
        timestamp_ms = self._sent_bytes * 1000 // (2 * self.sample_rate)
        self._sent_bytes += len(pcm16)
        return (
            '{"event":"media","'
            + self._sid_key
            + '":'
            + quoted(self.stream_sid)
            + ',"media":{"chunk":"'
            + str(self._sent_chunks)
            + '","timestamp":"'
            + str(timestamp_ms)
            + '","sequenceNumber":"'
            + str(self._sent_chunks)
            + '","payload":"'
            + b64encode(pcm16).decode()
            + '"}}'
        )

    def mark(self, name: str) -> list[Frame]:
        return [*self.flush_audio(), sid_mark(self._sid_key, self.stream_sid, name)]

    def clear(self) -> list[Frame]:
        self._chunks.drop()
        return [sid_clear(self._sid_key, self.stream_sid)]
