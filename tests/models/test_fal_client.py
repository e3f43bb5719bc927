"""The fal client against the simulator's fal flavour (PROTOCOLS.md §4), and a dead peer."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging

import pytest

from phonebridge.errors import ModelAuthError, ModelUnavailable
from phonebridge.models.base import EndReason, SessionEnded
from phonebridge.models.factory import FalSettings, make_factory
from phonebridge.models.fal import FalSession
from phonebridge.simulators.personaplex import PersonaPlexSimulator
from phonebridge.simulators.personaplex.testing import GUARD, REQUEST, SILENCE, converse

KEY = "fal-key-0f9e8d7c:secretpart"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


def session_for(sim_url: str, key: str = KEY, **options: object) -> FalSession:
    settings = FalSettings(api_key=key, base_url=sim_url, **options)  # type: ignore[arg-type]
    session = make_factory("fal", settings).create(REQUEST)
    assert isinstance(session, FalSession)
    return session


async def test_happy_path_pcm_in_msgpack_with_full_config() -> None:
    async with PersonaPlexSimulator(flavour="fal", reply="speech", api_key=KEY) as sim:
        got = await converse(session_for(sim.url), frames=40)
        record = await sim.wait_for_close()
    assert record.input_messages == 10  # four 20 ms frames per 80 ms message
    assert record.input_samples == 40 * 480
    assert record.fal_configs_incomplete == 0
    assert record.fal_last_config == {
        "prompt": REQUEST.prompt,
        "voice": "NATF2",
        "temperature_audio": 0.8,
        "temperature_text": 0.7,
        "top_k_audio": 250,
        "top_k_text": 25,
    }
    assert len(got.audio) == 10 * 1280  # 80 ms at the line's 8 kHz
    assert got.texts[0] == " Hello,"  # x-fal-message timings skipped, text surfaced
    assert got.ends == [SessionEnded(EndReason.CLOSED_BY_US)]


async def test_seed_sent_only_when_configured() -> None:
    async with PersonaPlexSimulator(flavour="fal") as sim:
        await converse(session_for(sim.url, seed=42), frames=4)
        record = await sim.wait_for_close()
    assert record.fal_last_config["seed"] == 42


async def test_idle_input_ends_with_fal_timeout() -> None:
    async with PersonaPlexSimulator(flavour="fal", idle_timeout=0.2) as sim:
        got = await converse(session_for(sim.url), frames=4, close=False)  # then nothing
    assert got.ends == [SessionEnded(EndReason.TIMEOUT, "TIMEOUT: no input for 0.2 s")]
    assert got.events[-1] == got.ends[0]


async def test_server_dies_mid_call_is_a_remote_error() -> None:
    async with PersonaPlexSimulator(flavour="fal", die_after=0.2) as sim:
        got = await converse(session_for(sim.url), frames=50, close=False)
    assert got.ends == [SessionEnded(EndReason.REMOTE_ERROR, "code 1006")]


async def test_bad_key_is_an_auth_error_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with PersonaPlexSimulator(flavour="fal", api_key="the-right-key") as sim:
        session = session_for(sim.url)
        with pytest.raises(ModelAuthError) as caught:
            await session.open()
    assert KEY not in str(caught.value)
    client_log = [r for r in caplog.records if r.name.startswith("phonebridge.models")]
    assert any("Authorization" in r.getMessage() for r in client_log)
    assert all("secretpart" not in r.getMessage() for r in client_log)


async def test_not_found_is_unavailable() -> None:
    async with PersonaPlexSimulator(flavour="fal", reject_status=404) as sim:
        with pytest.raises(ModelUnavailable):
            await session_for(sim.url).open()


async def _dead_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts the upgrade, then never reads or answers again (a wedged peer)."""
    request = await reader.readuntil(b"\r\n\r\n")
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID.encode()).digest())
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    await writer.drain()
    try:
        await asyncio.sleep(GUARD)
    finally:
        writer.close()


async def test_close_does_not_hang_on_a_dead_peer() -> None:
    server = await asyncio.start_server(_dead_peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        session = session_for(f"ws://127.0.0.1:{port}", close_timeout=0.2)
        async with asyncio.timeout(GUARD / 2):  # far below the peer's own sleep
            await session.open()
            await session.send_audio(SILENCE)
            await session.close()
            events = [e async for e in session.events()]
    finally:
        server.close()
        await server.wait_closed()
    assert events == [SessionEnded(EndReason.CLOSED_BY_US)]
    assert session.timings.closed is not None
