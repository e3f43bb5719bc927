"""The self-hosted client against the simulator over loopback (PROTOCOLS.md §2)."""

from __future__ import annotations

import asyncio

import pytest

from phonebridge.errors import HandshakeTimeout, LocalProtocolError, ModelBusy, ModelUnavailable
from phonebridge.models.base import AgentAudio, EndReason, ModelSession, SessionEnded
from phonebridge.models.factory import PersonaPlexSettings, make_factory
from phonebridge.models.personaplex import PersonaPlexSession, ServerBusyOrSlow
from phonebridge.simulators.personaplex import PersonaPlexSimulator
from phonebridge.simulators.personaplex.testing import (
    GUARD,
    REQUEST,
    SILENCE,
    Collected,
    collect,
    converse,
)


def session_for(sim: PersonaPlexSimulator, handshake_timeout: float = 5.0) -> ModelSession:
    settings = PersonaPlexSettings((sim.url,), handshake_timeout=handshake_timeout)
    return make_factory("personaplex", settings).create(REQUEST, server_url=sim.url)


async def test_happy_path_audio_out_and_text_in() -> None:
    async with PersonaPlexSimulator(reply="speech", conditioning_delay=0.05) as sim:
        session = session_for(sim)
        got = await converse(session, frames=40)
        record = await sim.wait_for_close()
    assert len(got.audio) == 10 * 1280  # one 80 ms page per 80 ms sent (8 kHz)
    assert got.texts[:2] == [" Hello,", " thanks"]
    assert got.ends == [SessionEnded(EndReason.CLOSED_BY_US)]
    assert got.events[-1] == got.ends[0]
    assert record.query == {"text_prompt": [REQUEST.prompt], "voice_prompt": ["NATF2.pt"]}
    assert "seed" not in record.query
    assert record.bos_pages == 1  # one encoder for the socket's life
    assert record.frames_out == 10
    t = session.timings
    assert t.started is not None
    assert t.connected is not None
    assert t.ready is not None
    assert t.first_audio is not None
    assert t.closed is not None
    assert t.started <= t.connected <= t.ready <= t.first_audio <= t.closed


async def test_nothing_sent_before_the_handshake() -> None:
    async with PersonaPlexSimulator(conditioning_delay=0.3) as sim:
        session = session_for(sim)

        async def eager_caller() -> None:  # audio from the call before the model is ready
            while session.timings.ready is None:
                await session.send_audio(SILENCE)
                await asyncio.sleep(0.01)

        async with asyncio.timeout(GUARD):
            caller = asyncio.create_task(eager_caller())
            await session.open()
            await caller
            for _ in range(8):
                await session.send_audio(SILENCE)
            pages = 0
            async for event in session.events():  # two 80 ms steps come back
                pages += isinstance(event, AgentAudio)
                if pages == 2:
                    break
            await session.close()
        record = await sim.wait_for_close()
    assert record.pre_handshake_messages == 0
    assert record.bos_pages == 1
    assert record.input_messages == 3  # the headers, then one page per 80 ms step
    assert record.input_samples == 8 * 480
    assert record.end == "client closed"


async def test_the_encoder_is_never_restarted_over_a_long_stream() -> None:
    async with PersonaPlexSimulator(reply="echo", conditioning_delay=0.01) as sim:
        session = session_for(sim)
        async with asyncio.timeout(GUARD):
            await session.open()
            sink = Collected()
            reader = asyncio.create_task(collect(session, sink))
            for _ in range(200):  # 4 s of audio, sent fast: the simulator does not care
                await session.send_audio(SILENCE)
            await asyncio.sleep(0.1)
            await session.close()
            await reader
        record = await sim.wait_for_close()
    assert record.bos_pages == 1
    assert record.end == "client closed"  # the server never died of a second BOS
    assert record.frames_out == 50


async def test_handshake_timeout_closes_the_socket() -> None:
    async with PersonaPlexSimulator(never_handshake=True) as sim:
        session = session_for(sim, handshake_timeout=0.2)
        async with asyncio.timeout(GUARD):
            with pytest.raises(HandshakeTimeout) as caught:
                await session.open()
        record = await sim.wait_for_close()
    assert "busy or conditioning too slow" in str(caught.value)
    assert caught.value.retryable
    assert record.end == "client closed"
    assert session.timings.closed is not None
    assert session.timings.ready is None


async def test_busy_server_second_connection_gives_up_and_reports_busy() -> None:
    async with PersonaPlexSimulator(reply="silence", conditioning_delay=0.01) as sim:
        first = session_for(sim)
        second = session_for(sim, handshake_timeout=0.3)
        async with asyncio.timeout(GUARD):
            await first.open()
            with pytest.raises(ModelBusy) as caught:
                await second.open()
            await first.send_audio(SILENCE)  # the first call is unaffected
            await first.close()
        waiting = await sim.wait_for_close(1)
    assert isinstance(caught.value, ServerBusyOrSlow)
    assert isinstance(caught.value, HandshakeTimeout)
    assert waiting.waited_behind_busy
    assert waiting.session_started_at is None  # it never got the server
    assert waiting.handshake_at is None


async def test_server_closes_during_conditioning() -> None:
    async with PersonaPlexSimulator(close_during_conditioning=True, conditioning_delay=0.2) as sim:
        session = session_for(sim)
        async with asyncio.timeout(GUARD):
            with pytest.raises(ModelUnavailable, match="1006"):
                await session.open()
    assert session.timings.closed is not None


async def test_server_dies_mid_call() -> None:
    async with PersonaPlexSimulator(reply="echo", conditioning_delay=0.01, die_after=0.3) as sim:
        session = session_for(sim)
        got = await converse(session, frames=100, close=False)
        await session.send_audio(SILENCE)  # after the end: a no-op, no exception
        await session.close()
    assert got.ends == [SessionEnded(EndReason.REMOTE_CLOSED, "code 1006")]
    assert got.events[-1] == got.ends[0]
    assert session.timings.closed is not None


async def test_close_is_idempotent_and_concurrent() -> None:
    async with PersonaPlexSimulator(conditioning_delay=0.01) as sim:
        session = session_for(sim)
        async with asyncio.timeout(GUARD):
            await session.open()
            await asyncio.gather(session.close(), session.close())
            await session.close()
            events = [e async for e in session.events()]
    assert events == [SessionEnded(EndReason.CLOSED_BY_US)]


async def test_unsupported_controls_and_misuse() -> None:
    session = PersonaPlexSession(REQUEST, server_url="ws://127.0.0.1:9")
    with pytest.raises(LocalProtocolError):
        await session.end_of_turn()
    with pytest.raises(LocalProtocolError):
        await session.inject_text("hi")
    with pytest.raises(LocalProtocolError):
        await session.send_audio(b"short")
    assert not session.supports_end_of_turn


async def test_refused_connection_is_unavailable() -> None:
    async with PersonaPlexSimulator() as sim:
        url = sim.url
    session = PersonaPlexSession(REQUEST, server_url=url)  # nothing listens there any more
    with pytest.raises(ModelUnavailable):
        await session.open()


async def test_clock_is_injected() -> None:
    ticks = iter(range(100))
    async with PersonaPlexSimulator(conditioning_delay=0.01) as sim:
        settings = PersonaPlexSettings((sim.url,))
        factory = make_factory("personaplex", settings, clock=lambda: float(next(ticks)))
        session = factory.create(REQUEST)
        await session.open()
        await session.close()
    assert session.timings.time_to_ready == 2.0
    assert session.timings.socket_seconds(now=99.0) == 2.0
