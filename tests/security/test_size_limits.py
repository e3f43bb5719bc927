"""Message-size limits on every socket (issue 8, "Message-size limits on every socket").

| socket                          | limit                          | where                     |
|---------------------------------|--------------------------------|---------------------------|
| HTTP request body (webhooks)    | 64 KiB, 413 before reading     | web/limits.py             |
| HTTP headers                    | 16 KiB (h11's default)         | uvicorn                   |
| Twilio media WebSocket frame    | 64 KiB, close 1009             | uvicorn ws_max_size       |
| Twilio message / media payload  | 64 Ki chars / 8000 bytes       | telephony/twilio/protocol |
| model client, received message  | 1 MiB, session ends            | models/wsclient.py        |
| PersonaPlex simulator, received | 1 MiB, close 1009              | simulators/personaplex    |
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from phonebridge.local import DEMO_AUTH_TOKEN, LocalBridge
from phonebridge.models.base import EndReason, SessionEnded, SessionRequest
from phonebridge.models.personaplex import PersonaPlexSession
from phonebridge.models.wsclient import DEFAULT_MAX_MESSAGE_BYTES
from phonebridge.simulators.personaplex.server import PersonaPlexSimulator
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign
from phonebridge.web.limits import MAX_REQUEST_BODY_BYTES, BodySizeLimit

from .conftest import BridgeFactory

# -- the body limit on its own (in-process ASGI) --------------------------------


def echo_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(BodySizeLimit, max_bytes=1000)

    @app.post("/echo")
    async def echo(request: Request) -> int:
        return len(await request.body())

    return app


async def chunks(total: int, size: int = 300) -> AsyncIterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


async def test_body_limit_at_and_past_the_limit() -> None:
    transport = httpx.ASGITransport(app=echo_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        assert (await http.post("/echo", content=b"x" * 1000)).json() == 1000
        assert (await http.post("/echo", content=b"x" * 1001)).status_code == 413
        assert (await http.post("/echo", content=chunks(1000))).json() == 1000  # chunked
        assert (await http.post("/echo", content=chunks(5000))).status_code == 413
        for bad in ("-1", "1e3", "12, 12", " "):
            response = await http.post("/echo", content=b"", headers={"Content-Length": bad})
            assert response.status_code == 400, bad


# -- the real bridge ---------------------------------------------------------------------


@pytest.fixture
async def bridge(start_bridge: BridgeFactory) -> AsyncIterator[LocalBridge]:
    async with start_bridge() as running:
        yield running


async def raw_http(bridge: LocalBridge, head: bytes, body: bytes = b"") -> bytes:
    """Send ``head`` (+ ``body``) on a fresh connection; the status line that comes back."""
    host, port = bridge.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head + body)
        await writer.drain()
        # Generous bound: only there to turn a server waiting for the body into a failure.
        async with asyncio.timeout(10):
            return await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_10_mb_webhook_is_refused_before_its_body_is_read(bridge: LocalBridge) -> None:
    declared = (
        b"POST /twilio/voice HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 10485760\r\n\r\n"
    )
    # Not one byte of the 10 MB is sent: the answer must not wait for it.
    assert (await raw_http(bridge, declared)).startswith(b"HTTP/1.1 413")
    chunked = (
        b"POST /twilio/voice HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n" % 16384 + b"a=" + b"b" * 16382 + b"\r\n"
    body = chunk * (MAX_REQUEST_BODY_BYTES // 16384 + 1)  # one chunk past the limit, no end
    assert (await raw_http(bridge, chunked, body)).startswith(b"HTTP/1.1 413")
    async with httpx.AsyncClient(base_url=bridge.url, timeout=10) as http:
        # Still serving, and an ordinary (unsigned) webhook reaches the signature check.
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.post("/twilio/voice", data={"To": "+1"})).status_code == 403
    assert all(sim.connections == [] for sim in bridge.self_hosted)


def media_url(bridge: LocalBridge) -> tuple[str, dict[str, str]]:
    signature = sign(DEMO_AUTH_TOKEN, "wss://bridge.phonebridge.invalid/twilio/media", {})
    return bridge.url.replace("http://", "ws://") + "/twilio/media", {SIGNATURE_HEADER: signature}


async def closed_with(ws: ClientConnection, frame: str | bytes) -> int | None:
    """Send ``frame`` and wait for the peer to close; the close code it sent."""
    try:
        await ws.send(frame)
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None


async def test_media_socket_frames_are_bounded(bridge: LocalBridge) -> None:
    url, headers = media_url(bridge)
    connected = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    # Past uvicorn's ws_max_size (64 KiB): closed by the server, 1009 "message too big".
    async with connect(url, additional_headers=headers, max_size=None) as ws:
        await ws.send(connected)
        assert await closed_with(ws, "x" * (70 * 1024)) == 1009
    # Under it, but a media payload past the protocol's 8000 bytes: a protocol error.
    payload = "/" * 40_000
    media = {
        "event": "media",
        "sequenceNumber": "2",
        "streamSid": "MZ" + "1" * 32,
        "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": payload},
    }
    async with connect(url, additional_headers=headers) as ws:
        await ws.send(connected)
        assert await closed_with(ws, json.dumps(media)) not in (None, 1000)
    # No model session was opened for either socket, and the bridge still serves.
    assert all(sim.connections == [] for sim in bridge.self_hosted)
    async with httpx.AsyncClient(base_url=bridge.url, timeout=10) as http:
        assert (await http.get("/healthz")).status_code == 200


# -- the model client and the simulator -----------------------------------------------------


async def test_model_client_ends_the_session_on_an_oversize_message() -> None:
    closes: list[int | None] = []

    async def oversize_server(ws: ServerConnection) -> None:
        await ws.send(b"\x00")  # handshake: the model is ready
        await ws.send(b"\x01" + bytes(DEFAULT_MAX_MESSAGE_BYTES))  # one byte too many
        try:
            await ws.wait_closed()
        finally:
            closes.append(ws.close_code)

    async with serve(oversize_server, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        session = PersonaPlexSession(
            SessionRequest(prompt="You are terse.", voice="NATF2"),
            server_url=f"ws://127.0.0.1:{port}",
        )
        await session.open()
        try:
            async with asyncio.timeout(10):
                events = [event async for event in session.events()]
        finally:
            await session.close()
        async with asyncio.timeout(10):
            while not closes:  # noqa: ASYNC110 - the handler's finally is the signal
                await asyncio.sleep(0.01)
    assert len(events) == 1
    ended = events[0]
    assert isinstance(ended, SessionEnded)
    assert ended.reason in (EndReason.REMOTE_CLOSED, EndReason.PROTOCOL_ERROR)
    assert session.timings.closed is not None
    assert closes == [1009]  # we told the server why


async def test_simulator_refuses_an_oversize_frame() -> None:
    async with PersonaPlexSimulator(flavour="self-hosted", conditioning_delay=0.0) as sim:
        url = sim.url + "/api/chat?text_prompt=hi&voice_prompt=NATF2.pt"
        async with connect(url, max_size=None) as ws:
            async with asyncio.timeout(10):
                assert await ws.recv() == b"\x00"
            assert await closed_with(ws, b"\x01" + bytes(2**20)) == 1009
