"""What a call leaves behind: aligned recording, caller words, and survival of a crash."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Request

from phonebridge.local import DEMO_AUTH_TOKEN, PUBLIC_URL, LocalBridge
from phonebridge.simulators.personaplex.server import PersonaPlexSimulator
from phonebridge.simulators.phone.dial import dial
from phonebridge.storage.index import CallIndex

from .conftest import REPO, BridgeFactory, tone_mulaw

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


async def finished_record(bridge: LocalBridge, call_sid: str) -> Any:
    index = await CallIndex.create(bridge.settings.effective_database_url)
    try:
        async with asyncio.timeout(10):
            while True:
                record = await index.get(call_sid)
                if record is not None and record.ended_at is not None:
                    return record
                await asyncio.sleep(0.02)
    finally:
        await index.close()


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
    record = await finished_record(bridge, report.call_sid)
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
        record = await finished_record(bridge, report.call_sid)
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start_serve(env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "phonebridge.cli", "serve", env=env
    )
    async with httpx.AsyncClient() as http, asyncio.timeout(30):
        while True:
            try:
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return process
            except httpx.HTTPError:
                await asyncio.sleep(0.05)


async def test_kill_9_mid_call_leaves_a_playable_recording_and_a_crash_record(
    tmp_path: Path,
) -> None:
    personas = tmp_path / "personas"
    shutil.copytree(REPO / "personas", personas)
    port = free_port()
    data = tmp_path / "data"
    async with PersonaPlexSimulator(flavour="self-hosted", reply="echo") as sim:
        env = {
            **{
                k: v for k, v in os.environ.items() if not k.startswith(("PHONEBRIDGE_", "TWILIO_"))
            },
            "PHONEBRIDGE_PUBLIC_URL": PUBLIC_URL,
            "TWILIO_AUTH_TOKEN": DEMO_AUTH_TOKEN,
            "PERSONAPLEX_URLS": sim.url,
            "POLARGRID_API_KEY": "pg_unused",
            "FAL_KEY": "fal-unused",
            "PHONEBRIDGE_PERSONAS": str(personas),
            "PHONEBRIDGE_DATA": str(data),
            "PHONEBRIDGE_PORT": str(port),
        }
        server = await start_serve(env, port)
        try:
            phone = asyncio.create_task(
                dial(
                    f"http://127.0.0.1:{port}",
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
            server = await start_serve(env, port)
        finally:
            server.send_signal(signal.SIGTERM)
            await server.wait()
    index = await CallIndex.create(f"sqlite+aiosqlite:///{data / 'phonebridge.db'}")
    try:
        record = await index.get(report.call_sid)
    finally:
        await index.close()
    assert record is not None
    assert record.end_reason == "crashed"
    samples = read_stereo(record.recording_path)
    assert len(samples) >= 8000  # at least a second of the call survived, playable
    assert np.abs(samples[:, 0].astype(np.int32)).max() > 3000  # the caller's tone is in it
