"""The PolarGrid client against the simulator's polargrid flavour (PROTOCOLS.md §3)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from phonebridge.errors import HandshakeTimeout, ModelAuthError, ModelBusy, ModelRateLimited
from phonebridge.models.base import AgentAudio, EndReason, SessionEnded
from phonebridge.models.factory import PolarGridSettings, make_factory
from phonebridge.models.polargrid import PolarGridSession
from phonebridge.simulators.personaplex import PersonaPlexSimulator
from phonebridge.simulators.personaplex.testing import GUARD, REQUEST, SILENCE, converse

KEY = "pg_live_Zx81secretKEY"


def session_for(sim: PersonaPlexSimulator, key: str = KEY, **options: object) -> PolarGridSession:
    settings = PolarGridSettings(api_key=key, base_url=sim.url, **options)  # type: ignore[arg-type]
    session = make_factory("polargrid", settings).create(REQUEST)
    assert isinstance(session, PolarGridSession)
    return session


async def test_happy_path_with_bearer_subprotocol() -> None:
    async with PersonaPlexSimulator(flavour="polargrid", reply="echo", api_key=KEY) as sim:
        got = await converse(session_for(sim), frames=20, speech_frames=20)
        record = await sim.wait_for_close()
    assert record.subprotocols == (f"bearer.{KEY}",)
    assert "token" not in record.query
    assert record.query == {"voice": ["NATF2"], "persona": [REQUEST.prompt]}
    assert record.bos_pages == 1
    assert len(got.audio) == 5 * 1280  # 80 ms at 8 kHz
    assert got.ends == [SessionEnded(EndReason.CLOSED_BY_US)]


async def test_token_query_auth_option() -> None:
    async with PersonaPlexSimulator(flavour="polargrid", api_key=KEY) as sim:
        session = session_for(sim, auth="query")
        await converse(session, frames=4)
        record = await sim.wait_for_close()
    assert record.query["token"] == [KEY]
    assert record.subprotocols == ()
    assert KEY not in repr(session)


async def test_bad_key_is_a_typed_error_and_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "pg_wrong_Q9secretWRONG"
    async with PersonaPlexSimulator(flavour="polargrid", api_key=KEY) as sim:
        for auth in ("subprotocol", "query"):
            session = session_for(sim, key=wrong, auth=auth)
            with pytest.raises(ModelAuthError) as caught:
                await session.open()
            assert not caught.value.retryable
            assert wrong not in str(caught.value)
            assert wrong not in repr(session)
    assert sim.rejected == [401, 401]
    client_log = [r for r in caplog.records if r.name.startswith("phonebridge.models")]
    assert any("Sec-WebSocket-Protocol" in r.getMessage() for r in client_log)  # logged, masked
    assert any("token=" in r.getMessage() for r in client_log)
    assert all(wrong not in r.getMessage() for r in client_log)


async def test_key_never_in_logs_of_a_whole_call(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with PersonaPlexSimulator(flavour="polargrid", api_key=KEY, die_after=0.2) as sim:
        got = await converse(session_for(sim, auth="query"), frames=30, close=False)
    assert got.ends[0].reason is EndReason.REMOTE_CLOSED
    client_log = [r for r in caplog.records if not r.name.startswith("phonebridge.simulators")]
    assert client_log
    assert all(KEY not in r.getMessage() for r in client_log)
    assert all(KEY not in e.detail for e in got.ends)


async def test_rate_limited_carries_retry_after() -> None:
    async with PersonaPlexSimulator(flavour="polargrid", reject_status=429, retry_after=9) as sim:
        with pytest.raises(ModelRateLimited) as caught:
            await session_for(sim).open()
    assert caught.value.retryable
    assert caught.value.retry_after == 9.0


async def test_eos_starts_a_speech_reply_and_text_is_injected() -> None:
    async with PersonaPlexSimulator(flavour="polargrid", reply="speech") as sim:
        session = session_for(sim)
        async with asyncio.timeout(GUARD):
            await session.open()
            # Let the greeting play out (it is ~2.9 s = 36 steps; send fast). The
            # caller stays silent, so only the eos can start a reply.
            for _ in range(160):
                await session.send_audio(SILENCE)
            await session.inject_text("The caller's name is Ada.")
            await session.end_of_turn()
            for _ in range(120):
                await session.send_audio(SILENCE)
            texts: list[str] = []
            async for event in session.events():
                if isinstance(event, AgentAudio):
                    continue
                texts.append(getattr(event, "text", ""))
                if texts[-1] == " more.":
                    break
            await session.close()
        record = await sim.wait_for_close()
    assert record.controls == ["eos"]
    assert record.injected_text == ["The caller's name is Ada."]
    assert " Tell" in texts  # the reply the eos started ("I see. Tell me more.")


async def test_handshake_timeout_is_not_reported_as_busy() -> None:
    async with PersonaPlexSimulator(flavour="polargrid", never_handshake=True) as sim:
        with pytest.raises(HandshakeTimeout) as caught:
            await session_for(sim, handshake_timeout=0.2).open()
    assert not isinstance(caught.value, ModelBusy)  # hosted: not a lease problem
