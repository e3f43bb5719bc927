"""Caller transcription against a fake OpenAI-compatible server on loopback."""

from __future__ import annotations

import asyncio
import io
import json
import re
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from phonebridge.errors import StorageError
from phonebridge.storage.recording import CallRecorder
from phonebridge.storage.transcript import Segment, TranscriptBuilder
from phonebridge.storage.transcription import (
    caller_channel_wav,
    transcribe_caller,
    transcriptions_url,
)

KEY = "sk-test-not-a-real-key"


@dataclass
class FakeTranscriber:
    """Answers like an OpenAI-compatible server and keeps what it was sent."""

    answer: Response = field(
        default_factory=lambda: JSONResponse(
            {
                "text": "Hello. I need a table.",
                "segments": [
                    {"id": 0, "start": 0.5, "end": 1.2, "text": " Hello."},
                    {"id": 1, "start": 1.4, "end": 2.0, "text": " I need a table."},
                    {"id": 2, "start": 2.0, "end": 2.1, "text": "  "},
                ],
            }
        )
    )
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def transcriptions(self, request: Request) -> Response:
        form = await request.form()
        upload = form["file"]
        assert isinstance(upload, UploadFile)
        self.requests.append(
            {
                "authorization": request.headers.get("authorization"),
                "content_type": request.headers.get("content-type", ""),
                "fields": {k: v for k, v in form.multi_items() if isinstance(v, str)},
                "filename": upload.filename,
                "audio": await upload.read(),
            }
        )
        await form.close()
        return self.answer


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeTranscriber, str]]:
    transcriber = FakeTranscriber()
    app = Starlette(
        routes=[Route("/v1/audio/transcriptions", transcriber.transcriptions, methods=["POST"])]
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield transcriber, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


def make_recording(path: Path, seconds: float = 2.5) -> np.ndarray:
    recorder = CallRecorder(path)
    samples = int(seconds * 8000)
    caller = (np.arange(samples) % 3000 - 1500).astype(np.int16)
    recorder.add_caller(caller.astype("<i2").tobytes(), 0)
    recorder.add_agent(np.full(samples, 7, dtype="<i2").tobytes(), 0)
    recorder.close()
    return caller


async def test_sends_the_caller_channel_as_mono_8k_with_the_right_fields(
    tmp_path: Path, fake: tuple[FakeTranscriber, str], client: httpx.AsyncClient
) -> None:
    transcriber, url = fake
    recording = tmp_path / "call.wav"
    caller = make_recording(recording)
    before = recording.read_bytes()

    segments = await transcribe_caller(
        recording, url=url, api_key=KEY, model="whisper-1", client=client
    )

    assert segments == [Segment(0.5, 1.2, "Hello."), Segment(1.4, 2.0, "I need a table.")]
    (sent,) = transcriber.requests
    assert sent["authorization"] == f"Bearer {KEY}"
    assert sent["content_type"].startswith("multipart/form-data")
    assert sent["fields"] == {
        "model": "whisper-1",
        "response_format": "verbose_json",
        "timestamp_granularities[]": "segment",
    }
    assert sent["filename"] == "caller.wav"
    with wave.open(io.BytesIO(sent["audio"]), "rb") as mono:
        assert (mono.getnchannels(), mono.getsampwidth(), mono.getframerate()) == (1, 2, 8000)
        audio = np.frombuffer(mono.readframes(mono.getnframes()), dtype="<i2")
    np.testing.assert_array_equal(audio, caller)  # the left channel, not the agent
    assert recording.read_bytes() == before  # only ever read


async def test_no_key_means_no_authorization_header(
    tmp_path: Path, fake: tuple[FakeTranscriber, str], client: httpx.AsyncClient
) -> None:
    transcriber, url = fake
    make_recording(tmp_path / "call.wav")
    await transcribe_caller(
        tmp_path / "call.wav", url=url + "/v1/", api_key=None, model="m", client=client
    )
    assert transcriber.requests[0]["authorization"] is None


async def test_text_only_answers_become_one_segment(
    tmp_path: Path, fake: tuple[FakeTranscriber, str], client: httpx.AsyncClient
) -> None:
    transcriber, url = fake
    transcriber.answer = JSONResponse({"text": " Just text. "})
    make_recording(tmp_path / "call.wav", seconds=2.5)
    segments = await transcribe_caller(
        tmp_path / "call.wav", url=url, api_key=KEY, model="m", client=client
    )
    assert segments == [Segment(0.0, 2.5, "Just text.")]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (PlainTextResponse("quota exceeded", status_code=429), "HTTP 429"),
        (PlainTextResponse("boom", status_code=500), "HTTP 500"),
        (PlainTextResponse("<html>not json</html>"), "not JSON"),
        (JSONResponse(["a list"]), "not a JSON object"),
        (JSONResponse({"segments": [{"start": "x"}]}), "malformed"),
        (JSONResponse({"unexpected": True}), "neither"),
    ],
)
async def test_failures_raise_storage_error_and_keep_the_recording(
    tmp_path: Path,
    fake: tuple[FakeTranscriber, str],
    client: httpx.AsyncClient,
    answer: Response,
    message: str,
) -> None:
    transcriber, url = fake
    transcriber.answer = answer
    recording = tmp_path / "call.wav"
    make_recording(recording)
    before = recording.read_bytes()
    with pytest.raises(StorageError, match=message) as caught:
        await transcribe_caller(recording, url=url, api_key=KEY, model="m", client=client)
    assert KEY not in str(caught.value)
    assert recording.read_bytes() == before


async def test_an_unreachable_server_is_a_storage_error(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    make_recording(tmp_path / "call.wav")
    with pytest.raises(
        StorageError, match=re.escape("request to 127.0.0.1/v1/audio/transcriptions")
    ):
        await transcribe_caller(
            tmp_path / "call.wav", url="http://127.0.0.1:1", api_key=KEY, model="m", client=client
        )


def test_non_recordings_are_refused(tmp_path: Path) -> None:
    (tmp_path / "x.wav").write_bytes(b"nope")
    with pytest.raises(StorageError, match="cannot read"):
        caller_channel_wav(tmp_path / "x.wav")
    mono = tmp_path / "mono.wav"
    with wave.open(str(mono), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 10)
    with pytest.raises(StorageError, match="not a stereo"):
        caller_channel_wav(mono)


def test_transcriptions_url_accepts_bases_with_or_without_v1() -> None:
    expected = "https://api.example.com/v1/audio/transcriptions"
    for base in (
        "https://api.example.com",
        "https://api.example.com/",
        "https://api.example.com/v1",
    ):
        assert transcriptions_url(base) == expected


async def test_segments_merge_into_a_stored_transcript(
    tmp_path: Path, fake: tuple[FakeTranscriber, str], client: httpx.AsyncClient
) -> None:
    _, url = fake
    make_recording(tmp_path / "call.wav")
    builder = TranscriptBuilder("CA" + "0" * 32)
    builder.agent_text(" Welcome", 0.1)
    builder.write(tmp_path / "t.json")
    segments = await transcribe_caller(
        tmp_path / "call.wav", url=url, api_key=KEY, model="m", client=client
    )

    stored = TranscriptBuilder.from_json(json.loads((tmp_path / "t.json").read_text()))
    stored.caller_segments(segments)
    speakers = [(u["speaker"], u["text"]) for u in stored.to_json()["utterances"]]
    assert speakers == [("agent", "Welcome"), ("caller", "Hello."), ("caller", "I need a table.")]
