"""Sans-I/O core of the self-hosted PersonaPlex protocol (PROTOCOLS.md §2).

No sockets, no event loop, no clock: the thin client in
:mod:`phonebridge.models.personaplex` feeds received WebSocket messages to
:meth:`OggStreamProtocol.receive` and sends the bytes
:meth:`OggStreamProtocol.encode_audio` returns.

The facts this module enforces, each a way a call silently fails otherwise:

- §2.1: ``GET /api/chat`` with ``text_prompt`` (required, non-empty) and
  ``voice_prompt=NAME.pt`` from the fixed voice list only (the server joins it
  onto a directory without sanitising it). ``seed`` is never sent (any value
  crashes the handler); sampling parameters are not sent (they are ignored).
- §2.2: binary frames whose first byte is the kind: ``0x00`` handshake,
  ``0x01`` Ogg/Opus bytes, ``0x02`` one UTF-8 text piece.
- §2.3: nothing is sent before ``0x00`` (the server reads and discards it);
  then the first bytes are the OpusHead BOS page, from ONE encoder for the
  socket's life (a second BOS page kills the session).
- §2.4: received pages are decoded by counting samples, never by granule
  (the server's granules count 24 kHz samples).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final
from urllib.parse import urlencode, urlsplit, urlunsplit

from phonebridge.audio.opus import NARROWBAND, complexity_for
from phonebridge.audio.opus_stream import OggOpusDecodeStream, OggOpusEncodeStream
from phonebridge.errors import AudioError, ConfigError, LocalProtocolError, RemoteProtocolError
from phonebridge.models.base import (
    SAMPLE_RATE,
    VOICES,
    AgentAudio,
    AgentText,
    EndReason,
    SessionEnded,
    SessionRequest,
    frame_bytes,
)

CHAT_PATH: Final[str] = "/api/chat"
DEFAULT_PORT: Final[int] = 8998

# The real server closes with 1006 when its handler raised (no close frame).
ABNORMAL_CLOSURE: Final[int] = 1006


class Kind(IntEnum):
    """First byte of every binary frame (§2.2; ``CONTROL`` is PolarGrid's, §3)."""

    HANDSHAKE = 0x00
    AUDIO = 0x01
    TEXT = 0x02
    CONTROL = 0x03


@dataclass(frozen=True, slots=True)
class Ready:
    """The model finished conditioning and listens: the ``0x00`` handshake (§2.3 step 3)."""


WireEvent = Ready | AgentAudio | AgentText | SessionEnded
"""What a protocol core reports for one received message."""


def check_request(request: SessionRequest) -> None:
    """Refuse a request the server would crash on (§2.1): empty prompt, unknown voice."""
    if not request.prompt.strip():
        # An empty text_prompt crashes the server's session seconds in.
        raise ConfigError("a PersonaPlex session needs a non-empty prompt")
    if request.voice not in VOICES:
        # Only names from the fixed list: the server builds a file path from it.
        raise ConfigError(f"unknown PersonaPlex voice {request.voice!r} (known: {sorted(VOICES)})")


def build_chat_url(server_url: str, request: SessionRequest) -> str:
    """The ``/api/chat`` URL for ``server_url`` (``ws://host:8998`` or ``wss://…``).

    Only ``text_prompt`` and ``voice_prompt`` are sent: never ``seed`` (it
    crashes the handler) and no sampling parameters (the server ignores them;
    sampling is fixed at audio 0.8/250, text 0.7/25).
    """
    check_request(request)
    parts = urlsplit(server_url)
    if parts.scheme not in ("ws", "wss"):
        raise ConfigError(f"a PersonaPlex server URL must be ws:// or wss://, not {parts.scheme!r}")
    if not parts.hostname:
        raise ConfigError("a PersonaPlex server URL needs a host")
    path = parts.path.rstrip("/")
    if not path.endswith(CHAT_PATH):
        path += CHAT_PATH
    query = urlencode({"text_prompt": request.prompt, "voice_prompt": f"{request.voice}.pt"})
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def describe_close(code: int | None, reason: str) -> str:
    """A close code for humans; ``None`` (no close frame) is reported as 1006."""
    text = f"code {code if code is not None else ABNORMAL_CLOSURE}"
    return f"{text} ({reason})" if reason else text


# The server steps once per 1920 decoded samples (80 ms, §2.3 step 5), and its
# reader (sphn's OpusStreamReader) decodes every packet and trims no pre-skip,
# so step k needs exactly audio packets 4k..4k+3 of the stream. A page holding
# those four, sent as the fourth is encoded, reaches the server when the step
# first becomes possible: the same moment as four 20 ms pages would, in one
# message, one socket write and one CRC instead of four. The load profile put
# the model socket's per-message cost at a tenth of the bridge's CPU.
PACKETS_PER_MODEL_STEP = 4


class OggStreamProtocol:
    """One PersonaPlex conversation in Ogg/Opus frames (§2.2-§2.4).

    Owns one encoder and one decoder for the socket's life. Before the
    handshake :meth:`encode_audio` returns nothing: audio the caller produced
    while the model conditioned is dropped, never queued (§2.6).

    ``sample_rate`` is the leg's: the codec works at it, so no resampler runs
    on either side (libopus changes rate inside the codec, see
    audio/opus_stream.py). A narrowband leg caps the encoder at narrowband
    (nothing lives above 4 kHz on a phone line: cheaper and cleaner, see
    audio/opus.py); a wideband leg lets libopus pick the band (super-wideband
    at 24 kHz), so what the caller's microphone heard above 4 kHz reaches the
    model.
    """

    def __init__(
        self,
        *,
        complexity: int | None = None,
        bitrate: int | None = None,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        options: dict[str, int] = {
            "complexity": complexity if complexity is not None else complexity_for(sample_rate)
        }
        if bitrate is not None:
            options["bitrate"] = bitrate
        self.sample_rate = sample_rate
        self.frame_bytes = frame_bytes(sample_rate)
        self._encoder = OggOpusEncodeStream(
            sample_rate=sample_rate,
            packets_per_page=PACKETS_PER_MODEL_STEP,
            max_bandwidth=NARROWBAND if sample_rate <= 8000 else None,
            **options,
        )
        self._decoder = OggOpusDecodeStream(sample_rate=sample_rate)
        self._headers_sent = False
        self.ready = False

    @property
    def encoder_complexity(self) -> int:
        """The Opus complexity the caller's audio is encoded with (audio/opus.py)."""
        return self._encoder.complexity

    def on_open(self) -> None:
        """The upgrade completed; the model is not ready until ``0x00`` arrives."""

    def receive(self, message: bytes | str) -> list[WireEvent]:
        """Events for one received message. Raises :class:`RemoteProtocolError`."""
        if isinstance(message, str):
            return []  # the server never sends text frames (§2.2); nothing to act on
        if not message:
            raise RemoteProtocolError("empty binary frame from the model server")
        kind, payload = message[0], message[1:]
        if kind == Kind.HANDSHAKE:
            if self.ready:
                return []  # a repeated handshake changes nothing
            self.ready = True
            return [Ready()]
        if kind == Kind.AUDIO:
            try:
                pcm = self._decoder.push(payload)
            except AudioError as exc:
                raise RemoteProtocolError(f"corrupt Ogg/Opus from the model: {exc}") from exc
            return [AgentAudio(pcm)] if pcm else []
        if kind == Kind.TEXT:
            # The server already replaced SentencePiece's "▁" with a space (§2.2).
            return [AgentText(payload.decode("utf-8", errors="replace"))]
        # Unknown kinds: the server never sends them; ignore like it ignores ours.
        return []

    def encode_audio(self, pcm: bytes) -> list[bytes]:
        """The frames to send for one 20 ms frame of PCM at the leg's rate (none before ready).

        The first frame after the handshake carries the OpusHead BOS page and
        the OpusTags page ahead of the first audio page: the server reads pages
        from a byte stream, so joining them in one message is fine (§2.2).
        """
        if len(pcm) != self.frame_bytes:
            raise LocalProtocolError(
                f"send one 20 ms frame ({self.frame_bytes} bytes), got {len(pcm)}"
            )
        if not self.ready:
            return []
        pages = b""
        if not self._headers_sent:
            pages = self._encoder.headers()
            self._headers_sent = True
        pages += self._encoder.push(pcm)
        return [bytes([Kind.AUDIO]) + pages] if pages else []

    def end_for_close(self, code: int | None, reason: str) -> SessionEnded:
        """A closed socket is the server's only error signal (§2.1)."""
        return SessionEnded(EndReason.REMOTE_CLOSED, describe_close(code, reason))
