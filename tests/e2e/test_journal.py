"""What a call leaves behind: aligned recording, caller words, and survival of a crash."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Request

from phonebridge.local import DEMO_AUTH_TOKEN, PUBLIC_URL, LocalBridge
from phonebridge.simulators.personaplex.server import PersonaPlexSimulator
from phonebridge.simulators.phone.dial import dial

from .conftest import BridgeFactory, record_of, serve_process, tone_mulaw

SHAKSHUKA = "+14165550102"


def read_stereo(path: str | None) -> np.ndarray[Any, np.dtype[np.int16]]:
    assert path is not None
    with wave.open(path) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 8000, 2)
        frames = wav.readframes(wav.getnframes())
    return np.frombuffer(frames, dtype="<i2").reshape(-1, 2)


def onset(channel: np.ndarray[Any, np.dtype[np.int16]], threshold: int = 3000) -> int:
    loud = np.flatnonzero(np.abs(channel.astype(np.int32)) > threshold)
    assert loud.size, "no signal on this channel"
    return int(loud[0])


async def test_recording_channels_line_up_on_the_call_timeline(bridge: LocalBridge) -> None:
    # One second of silence, then the caller's tone; the echo model repeats it.
    audio = bytes([0xFF]) * 8000 + tone_mulaw(0.5)
    report = await dial(
        bridge.url,
        to=SHAKSHUKA,
        auth_token=DEMO_AUTH_TOKEN,
        public_url=bridge.public_url,
        audio=audio,
        tail=1.0,
    )
    record = await record_of(bridge, report.call_sid)
    samples = read_stereo(record.recording_path)
    caller_at = onset(samples[:, 0])
    agent_at = onset(samples[:, 1])
    # The tone starts exactly 1 s into the stream on the caller's (left) channel.
    assert abs(caller_at - 8000) <= 8
    # The agent's (right) echo follows it: after, and within the model's delay
    # plus the conditioning and a scheduling margin.
    assert caller_at < agent_at < caller_at + 8000


@pytest.fixture
async def fake_transcriber() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """An OpenAI-compatible transcription endpoint on loopback."""
    app = FastAPI()
    seen: list[dict[str, str]] = []

    @app.post("/v1/audio/transcriptions")
    async def transcribe(request: Request) -> dict[str, Any]:
        async with request.form() as form:
            seen.append({"model": str(form["model"]), "auth": request.headers["authorization"]})
        return {
            "text": "when is pickup",
            "segments": [{"start": 1.0, "end": 1.5, "text": " when is pickup"}],
        }

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", seen
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_caller_words_are_merged_into_the_transcript(
    start_bridge: BridgeFactory, fake_transcriber: tuple[str, list[dict[str, str]]]
) -> None:
    url, seen = fake_transcriber
    async with start_bridge(
        transcribe_url=url, transcribe_key="sk-test-transcribe", transcribe_model="whisper-x"
    ) as bridge:
        report = await dial(
            bridge.url,
            to=SHAKSHUKA,
            auth_token=DEMO_AUTH_TOKEN,
            public_url=bridge.public_url,
            audio=tone_mulaw(1.0),
            tail=0.3,
        )
        record = await record_of(bridge, report.call_sid)
        path = Path(record.transcript_path)
        async with asyncio.timeout(10):
            while True:
                data = json.loads(await asyncio.to_thread(path.read_text))
                caller = [u for u in data["utterances"] if u["speaker"] == "caller"]
                if caller:
                    break
                await asyncio.sleep(0.05)
    assert caller[0]["text"] == "when is pickup"
    assert seen == [{"model": "whisper-x", "auth": "Bearer sk-test-transcribe"}]


async def test_kill_9_mid_call_leaves_a_playable_recording_and_a_crash_record(
    tmp_path: Path,
) -> None:
    async with PersonaPlexSimulator(flavour="self-hosted", reply="echo") as sim:
        serve = serve_process(tmp_path, sim.url)
        server = await serve.start()
        try:
            phone = asyncio.create_task(
                dial(
                    serve.url,
                    to=SHAKSHUKA,
                    auth_token=DEMO_AUTH_TOKEN,
                    public_url=PUBLIC_URL,
                    audio=tone_mulaw(6.0),
                )
            )
            await sim.wait_for_connections(1)
            await asyncio.sleep(3.0)  # past the recorder's one-second header rewrites
            server.send_signal(signal.SIGKILL)
            await server.wait()
            report = await phone
            # The next start repairs the recording and marks the call.
            server = await serve.start()
        finally:
            server.send_signal(signal.SIGTERM)
            await server.wait()
    record = await serve.record(report.call_sid)
    assert record is not None
    assert record.end_reason == "crashed"
    samples = read_stereo(record.recording_path)
    assert len(samples) >= 8000  # at least a second of the call survived, playable
    assert np.abs(samples[:, 0].astype(np.int32)).max() > 3000  # the caller's tone is in it
