"""The Talk and listen sockets refuse abuse with a defined outcome (issue 13, "Abuse").

Driven by a plain WebSocket client (no browser needed): what a hostile page or
script would do. Each case ends with "no model session was opened" or, once a
call was admitted, with the call ended and nothing leaked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from phonebridge.local import LocalBridge, SimulatorOptions

from ..e2e.leaks import assert_no_leaks, baseline
from .conftest import TOKEN, BridgeFactory, record_of

START = json.dumps({"type": "start", "sampleRate": 24000})
FRAME = bytes(960)  # 20 ms of 24 kHz silence


@pytest.fixture
async def talk_bridge(start_bridge: BridgeFactory) -> AsyncIterator[LocalBridge]:
    options = SimulatorOptions(reply="echo", conditioning_delay=0.05)
    async with start_bridge(simulators=options, dashboard_token=TOKEN) as running:
        yield running


def ws_url(bridge: LocalBridge, path: str) -> str:
    return "ws://" + bridge.url.removeprefix("http://") + path


async def ticket(bridge: LocalBridge, user: str = "alice", **body: str) -> httpx.Response:
    async with httpx.AsyncClient(auth=(user, TOKEN)) as http:
        return await http.post(
            bridge.url + "/api/talk/tickets", json={"persona": "citysan", **body}
        )


async def socket_path(bridge: LocalBridge, user: str = "alice") -> str:
    response = await ticket(bridge, user)
    assert response.status_code == 200, response.text
    path: str = response.json()["socket_path"]
    return path


def model_connections(bridge: LocalBridge) -> int:
    return sum(len(sim.connections) for sim in [*bridge.self_hosted, bridge.polargrid, bridge.fal])


async def closed_with(ws: ClientConnection) -> int | None:
    """Read until the server closes; the close code it sent."""
    async with asyncio.timeout(10):
        while True:
            try:
                await ws.recv()
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None


async def test_no_ticket_no_call(talk_bridge: LocalBridge) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(talk_bridge.url + "/api/talk/tickets", json={"persona": "x"})
    assert response.status_code == 401
    for path in ("/talk/socket", "/talk/socket?ticket=guess", "/listen/socket?ticket=guess"):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(talk_bridge, path)):
                pass
        assert refused.value.response.status_code == 403
    # A ticket is bound to the page's origin: another site cannot use one it stole.
    path = await socket_path(talk_bridge)
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(talk_bridge, path), origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    assert model_connections(talk_bridge) == 0


async def test_a_ticket_opens_one_socket_once(talk_bridge: LocalBridge) -> None:
    before = baseline(talk_bridge)
    path = await socket_path(talk_bridge)
    async with connect(ws_url(talk_bridge, path)) as ws:
        await ws.send(START)
        call = json.loads(await ws.recv())
        assert call["type"] == "call"
        with pytest.raises(InvalidStatus) as replayed:
            async with connect(ws_url(talk_bridge, path)):
                pass
        assert replayed.value.response.status_code == 403
        await ws.send(json.dumps({"type": "hangup"}))
        assert await closed_with(ws) == 1000
    row = await record_of(talk_bridge, call["callSid"])
    assert row.end_reason == "caller_hangup"
    assert model_connections(talk_bridge) == 1
    await assert_no_leaks(talk_bridge, before)


@pytest.mark.parametrize(
    ("first", "code"),
    [
        (bytes(20_000), 1009),  # over the protocol's frame limit
        (bytes(70_000), 1009),  # over the server's WebSocket frame limit
        (FRAME, 1008),  # audio before start
        ("x" * 5000, 1009),  # oversize text
        ("not json", 1008),
        (json.dumps({"type": "start", "sampleRate": 8000}), 1008),  # not a wideband rate
    ],
)
async def test_bad_input_before_start_opens_nothing(
    talk_bridge: LocalBridge, first: bytes | str, code: int
) -> None:
    before = baseline(talk_bridge)
    async with connect(ws_url(talk_bridge, await socket_path(talk_bridge))) as ws:
        await ws.send(first)
        assert await closed_with(ws) == code
    assert model_connections(talk_bridge) == 0
    await assert_no_leaks(talk_bridge, before)


async def test_a_binary_flood_ends_the_call(talk_bridge: LocalBridge) -> None:
    before = baseline(talk_bridge)
    async with connect(ws_url(talk_bridge, await socket_path(talk_bridge))) as ws:
        await ws.send(START)
        call = json.loads(await ws.recv())
        for _ in range(300):  # 6 s of audio at once: far ahead of real time
            await ws.send(FRAME)
        assert await closed_with(ws) == 1008
    row = await record_of(talk_bridge, call["callSid"])
    assert row.end_reason == "protocol_error"
    assert "flood" in (row.error or "")
    await assert_no_leaks(talk_bridge, before)


async def test_per_user_cap_and_the_guard_apply_to_browser_calls(
    start_bridge: BridgeFactory,
) -> None:
    options = SimulatorOptions(reply="echo", conditioning_delay=0.05)
    async with start_bridge(
        simulators=options, dashboard_token=TOKEN, caller_max_calls_per_hour=1
    ) as bridge:
        async with connect(ws_url(bridge, await socket_path(bridge))) as ws:
            await ws.send(START)
            call = json.loads(await ws.recv())
            # One browser call per user at a time (PHONEBRIDGE_BROWSER_CALLS_PER_USER).
            second = await ticket(bridge)
            assert second.status_code == 429
            # Another user may call; here the guard's per-caller rate is per user.
            other = await socket_path(bridge, user="carol")
            async with connect(ws_url(bridge, other)) as ws2:
                await ws2.send(START)
                assert json.loads(await ws2.recv())["type"] == "call"
                await ws2.send(json.dumps({"type": "hangup"}))
                await closed_with(ws2)
            await ws.send(json.dumps({"type": "hangup"}))
            await closed_with(ws)
        await record_of(bridge, call["callSid"])
        opened = model_connections(bridge)
        # alice's second call this hour: the guard refuses it, no model is opened.
        async with connect(ws_url(bridge, await socket_path(bridge))) as ws:
            await ws.send(START)
            refused = json.loads(await ws.recv())
            assert refused["type"] == "refused"
            assert refused["reason"] == "rate_limited"
            assert await closed_with(ws) == 1013
        assert model_connections(bridge) == opened
        await assert_no_leaks(bridge)
