"""A business's webhook endpoint, simulated (a TEST DOUBLE for tests and benches).

Plays the context server and the call-summary receiver of docs/webhooks.md on
loopback, with one knob per failure the bridge must survive: slow, an error
status, malformed or huge JSON, a redirect, a signature check with its own
secret, failing the first N requests. It speaks just enough HTTP/1.1 for one
request per connection (``Connection: close``), written by hand because the
faults (a reply that never ends, a body of megabytes) are what it is for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from phonebridge.webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

Mode = Literal["ok", "slow", "status_500", "malformed", "huge", "redirect"]
MAX_REQUEST_BYTES = 4 << 20


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the receiver saw it (header names lower-cased)."""

    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool | None  # None: the receiver had no secret to check with

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(slots=True)
class WebhookReceiver:
    """``async with WebhookReceiver(reply={...}) as receiver: receiver.url``."""

    mode: Mode = "ok"
    reply: dict[str, Any] = field(default_factory=dict)
    secret: str | None = None
    """Check each request's signature with this; a bad one is answered 401."""
    fail_first: int = 0
    """Answer the first N requests 503 (a receiver that is down, then back)."""
    slow_seconds: float = 5.0
    received: list[Received] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0
    _server: asyncio.Server | None = None
    _arrived: asyncio.Condition | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> Self:
        self._arrived = asyncio.Condition()
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def wait_for(self, count: int) -> list[Received]:
        """Wait until ``count`` requests have arrived (bound it yourself)."""
        assert self._arrived is not None
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
        return self.received

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await self._read(reader)
            if request is not None:
                await self._answer(writer, request)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read(self, reader: asyncio.StreamReader) -> Received | None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        _method, path, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if length > MAX_REQUEST_BYTES:
            return None
        body = await reader.readexactly(length)
        checked: bool | None = None
        if self.secret is not None:
            checked = verify(
                self.secret,
                body,
                headers.get(TIMESTAMP_HEADER.lower()),
                headers.get(SIGNATURE_HEADER.lower()),
                time.time(),
            )
        received = Received(path, headers, body, checked)
        assert self._arrived is not None
        async with self._arrived:
            self.received.append(received)
            self._arrived.notify_all()
        return received

    async def _answer(self, writer: asyncio.StreamWriter, request: Received) -> None:
        if request.signature_ok is False:
            return await _send(writer, 401, b'{"error":"bad signature"}')
        if len(self.received) <= self.fail_first:
            return await _send(writer, 503, b'{"error":"down"}')
        match self.mode:
            case "slow":
                await asyncio.sleep(self.slow_seconds)
                await _send(writer, 200, json.dumps(self.reply).encode())
            case "status_500":
                await _send(writer, 500, b'{"error":"boom"}')
            case "malformed":
                await _send(writer, 200, b'{"customer": {"name": "Omar"')
            case "huge":
                # Undeclared length (the client must cut it), a megabyte of JSON.
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
                writer.write(b"Connection: close\r\n\r\n")
                writer.write(b'{"pad": "' + b"x" * (1 << 20) + b'"}')
                await writer.drain()
            case "redirect":
                await _send(writer, 302, b"", extra=f"Location: {self.url}/elsewhere\r\n")
            case _:
                await _send(writer, 200, json.dumps(self.reply).encode())


async def _send(writer: asyncio.StreamWriter, status: int, body: bytes, extra: str = "") -> None:
    writer.write(
        (
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
        ).encode()
        + body
    )
    await writer.drain()
