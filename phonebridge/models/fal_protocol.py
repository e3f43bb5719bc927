"""Sans-I/O core of fal.ai's ``fal-ai/personaplex/realtime`` (PROTOCOLS.md §4).

- Client → server: one msgpack map per binary frame: ``audio`` (raw PCM s16le,
  24 kHz mono, no Opus) plus the FULL configuration with every message,
  because a field left out reverts to its default. Audio goes out in 80 ms
  chunks (1920 samples): four of the call's 20 ms frames are buffered.
- Server → client: binary msgpack ``{audio, text}``; text frames are JSON
  control messages: ``x-fal-error`` (``TIMEOUT`` or ``INTERNAL_ERROR``, then a
  close) ends the session, ``x-fal-message`` (timings) is skipped.
- There is no handshake byte: the model is ready when the socket is open
  (fal's runtime only accepts the upgrade once a worker holds the model, which
  is where its ~20 s cold starts show up), so :meth:`FalProtocol.on_open`
  makes it ready.
- Any close code other than 1000 is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from phonebridge.audio.resample import Downsampler24kTo8k, Upsampler8kTo24k
from phonebridge.errors import ConfigError, LocalProtocolError, RemoteProtocolError
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
from phonebridge.models.personaplex_protocol import WireEvent, describe_close

DEFAULT_BASE_URL: Final[str] = "wss://fal.run"
REALTIME_PATH: Final[str] = "/fal-ai/personaplex/realtime"
FAL_RATE: Final[int] = 24000  # what fal's audio field carries both ways (§4)
CHUNK_SAMPLES: Final[int] = 1920  # 80 ms at 24 kHz: one model step
CHUNK_BYTES: Final[int] = CHUNK_SAMPLES * 2
NORMAL_CLOSURE: Final[int] = 1000


@dataclass(frozen=True, slots=True)
class FalConfig:
    """The configuration sent with every message (defaults are fal's own, §4)."""

    prompt: str
    voice: str = "NATF2"
    temperature_audio: float = 0.8
    temperature_text: float = 0.7
    top_k_audio: int = 250
    top_k_text: int = 25
    seed: int | None = None  # sent only when configured
    voice_audio_url: str | None = None  # voice cloning; billed twice

    def fields(self) -> dict[str, Any]:
        """The msgpack fields of this configuration (``audio`` excluded)."""
        out: dict[str, Any] = {
            "prompt": self.prompt,
            "voice": self.voice,
            "temperature_audio": self.temperature_audio,
            "temperature_text": self.temperature_text,
            "top_k_audio": self.top_k_audio,
            "top_k_text": self.top_k_text,
        }
        if self.seed is not None:
            out["seed"] = self.seed
        if self.voice_audio_url is not None:
            out["voice_audio_url"] = self.voice_audio_url
        return out


def config_for(request: SessionRequest, **overrides: Any) -> FalConfig:
    """A :class:`FalConfig` for a call's request; ``overrides`` set sampling options."""
    if not request.prompt.strip():
        raise ConfigError("a fal PersonaPlex session needs a non-empty prompt")
    if request.voice not in VOICES:
        raise ConfigError(f"unknown PersonaPlex voice {request.voice!r}")
    return FalConfig(prompt=request.prompt, voice=request.voice, **overrides)


def build_url(base_url: str = DEFAULT_BASE_URL) -> str:
    """``wss://fal.run/fal-ai/personaplex/realtime``; ``FAL_BASE_URL`` replaces the base."""
    return base_url.rstrip("/") + REALTIME_PATH


def auth_headers(api_key: str) -> dict[str, str]:
    """The upgrade header for server-side auth: ``Authorization: Key <FAL_KEY>``."""
    if not api_key:
        raise ConfigError("fal needs an API key")
    return {"Authorization": f"Key {api_key}"}


class FalProtocol:
    """One fal realtime session: 20 ms frames in, 80 ms msgpack messages out.

    fal carries raw 24 kHz PCM (§4). An 8 kHz leg goes through the polyphase
    resamplers, one per direction, their filter state kept for the session's
    life; a 24 kHz leg's audio goes to fal as it is, never squeezed through
    8 kHz. Other rates are refused: they would need a resampler for a ratio
    the bridge does not have yet (16 kHz is 2:3).
    """

    def __init__(self, config: FalConfig, *, sample_rate: int = SAMPLE_RATE) -> None:
        if sample_rate not in (SAMPLE_RATE, FAL_RATE):
            raise ConfigError(f"fal sessions take 8000 or 24000 Hz audio, not {sample_rate}")
        self._fields = config.fields()
        self._pending = bytearray()
        self.sample_rate = sample_rate
        self.frame_bytes = frame_bytes(sample_rate)
        narrowband = sample_rate == SAMPLE_RATE
        self._upsampler = Upsampler8kTo24k() if narrowband else None
        self._downsampler = Downsampler24kTo8k() if narrowband else None
        self.ready = False

    def on_open(self) -> None:
        self.ready = True  # no handshake byte on fal: an open socket is a ready model

    def encode_audio(self, pcm: bytes) -> list[bytes]:
        """Buffer one 20 ms frame; every fourth returns one msgpack message of 80 ms."""
        if len(pcm) != self.frame_bytes:
            raise LocalProtocolError(
                f"send one 20 ms frame ({self.frame_bytes} bytes), got {len(pcm)}"
            )
        if not self.ready:
            return []
        self._pending += pcm if self._upsampler is None else self._upsampler.push(pcm)
        if len(self._pending) < CHUNK_BYTES:
            return []
        chunk = bytes(self._pending[:CHUNK_BYTES])
        del self._pending[:CHUNK_BYTES]
        message = msgpack.packb({**self._fields, "audio": chunk}, use_bin_type=True)
        assert isinstance(message, bytes)
        return [message]

    def receive(self, message: bytes | str) -> list[WireEvent]:
        """Events for one received message. Raises :class:`RemoteProtocolError`."""
        if isinstance(message, str):
            return self._control(message)
        try:
            reply = msgpack.unpackb(message, raw=False)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise RemoteProtocolError(f"fal sent a frame that is not msgpack: {exc}") from exc
        if not isinstance(reply, dict):
            raise RemoteProtocolError("fal sent a msgpack value that is not a map")
        events: list[WireEvent] = []
        audio = reply.get("audio")
        if isinstance(audio, bytes) and audio:
            if len(audio) % 2:
                raise RemoteProtocolError("fal sent PCM with an odd number of bytes")
            line = audio if self._downsampler is None else self._downsampler.push(audio)
            if line:
                events.append(AgentAudio(line))
        text = reply.get("text")
        if isinstance(text, str) and text:
            events.append(AgentText(text))
        return events

    def _control(self, message: str) -> list[WireEvent]:
        try:
            control = json.loads(message)
        except (ValueError, RecursionError):
            # Unknown text: fal documents only JSON control messages. ValueError
            # covers JSONDecodeError and numbers past int()'s 4300-digit limit;
            # RecursionError is nesting deeper than the decoder's stack
            # (both found by tests/fuzz/test_fuzz_model_frames.py).
            return []
        if not isinstance(control, dict) or control.get("type") != "x-fal-error":
            return []  # x-fal-message (timings) and anything newer: informational
        error = str(control.get("error", "UNKNOWN"))
        reason = str(control.get("reason", "") or "")
        detail = f"{error}: {reason}" if reason else error
        kind = EndReason.TIMEOUT if error == "TIMEOUT" else EndReason.REMOTE_ERROR
        return [SessionEnded(kind, detail)]

    def end_for_close(self, code: int | None, reason: str) -> SessionEnded:
        """1000 is a normal end; any other close code is an error (§4)."""
        kind = EndReason.REMOTE_CLOSED if code == NORMAL_CLOSURE else EndReason.REMOTE_ERROR
        return SessionEnded(kind, describe_close(code, reason))
