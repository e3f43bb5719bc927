"""Optional post-call step: the caller's words from an OpenAI-compatible transcription API.

Wire format: OpenAI "Create transcription", ``POST {url}/v1/audio/transcriptions``
as ``multipart/form-data`` with the fields ``file`` (the audio), ``model``,
``response_format=verbose_json`` and ``timestamp_granularities[]=segment``;
``Authorization: Bearer <key>`` when a key is configured. The ``verbose_json``
answer carries ``segments: [{start, end, text, ...}]`` (seconds) and ``text``;
servers that ignore the granularity get one segment spanning the recording.
Hosted Whisper and self-hosted servers (faster-whisper-server, whisper.cpp's
server, vLLM, ...) speak this shape.

Only the caller (left) channel is sent, as an 8 kHz mono WAV built in memory.
The recording is only ever read: a failed transcription (server down, 4xx/5xx,
unparseable answer) raises :class:`StorageError` and leaves it as it was.
"""

from __future__ import annotations

import asyncio
import io
import wave
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from phonebridge.errors import StorageError
from phonebridge.storage.transcript import Segment

__all__ = ["Segment", "caller_channel_wav", "transcribe_caller", "transcriptions_url"]


def transcriptions_url(url: str) -> str:
    """``{url}/v1/audio/transcriptions``; a base URL that already ends in ``/v1`` is accepted."""
    base = url.rstrip("/")
    base = base.removesuffix("/v1")
    return f"{base}/v1/audio/transcriptions"


def caller_channel_wav(recording: Path) -> tuple[bytes, float]:
    """The left channel of a stereo 16-bit call recording as a mono WAV, and its duration."""
    try:
        with wave.open(str(recording), "rb") as stereo:
            if stereo.getnchannels() != 2 or stereo.getsampwidth() != 2:
                raise StorageError(f"{recording} is not a stereo 16-bit call recording")
            rate = stereo.getframerate()
            frames = stereo.readframes(stereo.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise StorageError(f"cannot read recording {recording}: {exc}") from exc
    whole_frames = len(frames) // 4  # a truncated file may end mid-frame
    left = np.frombuffer(frames[: whole_frames * 4], dtype="<i2")[0::2]
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as mono:
        mono.setnchannels(1)
        mono.setsampwidth(2)
        mono.setframerate(rate)
        mono.writeframes(left.tobytes())
    return buffer.getvalue(), whole_frames / rate if rate else 0.0


def _parse_segments(body: Any, duration: float) -> list[Segment]:
    if not isinstance(body, dict):
        raise StorageError("transcription answer is not a JSON object")
    segments = body.get("segments")
    if isinstance(segments, list) and segments:
        parsed: list[Segment] = []
        for item in segments:
            try:
                start, end, text = float(item["start"]), float(item["end"]), str(item["text"])
            except (KeyError, TypeError, ValueError) as exc:
                raise StorageError(f"transcription segment is malformed: {exc!r}") from exc
            if text.strip():
                parsed.append(Segment(start, max(start, end), text.strip()))
        return parsed
    whole_text = body.get("text")
    if not isinstance(whole_text, str):
        raise StorageError("transcription answer has neither segments nor text")
    return [Segment(0.0, duration, whole_text.strip())] if whole_text.strip() else []


async def transcribe_caller(
    recording: Path,
    *,
    url: str,
    api_key: str | None,
    model: str,
    client: httpx.AsyncClient,
    request_timeout: float = 300.0,
) -> list[Segment]:
    """Send the caller channel of ``recording`` for transcription; segments in call time.

    Raises :class:`StorageError` on any failure (the message never contains the key).
    """
    audio, duration = await asyncio.to_thread(caller_channel_wav, recording)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    form = {
        "model": model,
        "response_format": "verbose_json",
        "timestamp_granularities[]": "segment",
    }
    endpoint = transcriptions_url(url)
    parsed_url = httpx.URL(endpoint)
    shown = f"{parsed_url.host}{parsed_url.path}"  # no userinfo or query: they may hold secrets
    try:
        response = await client.post(
            endpoint,
            data=form,
            files={"file": ("caller.wav", audio, "audio/wav")},
            headers=headers,
            timeout=request_timeout,
        )
    except httpx.HTTPError as exc:
        raise StorageError(f"transcription request to {shown} failed: {exc!r}") from exc
    if response.status_code >= 400:
        snippet = response.text[:200]
        raise StorageError(f"transcription failed: HTTP {response.status_code}: {snippet}")
    try:
        body = response.json()
    except ValueError as exc:
        raise StorageError("transcription answer is not JSON") from exc
    return _parse_segments(body, duration)
