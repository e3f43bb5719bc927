"""One adapter from a Starlette WebSocket to the sockets the legs read and write.

The Twilio leg, the further carriers' legs and the browser leg each take a
small socket protocol (receive, send, close); they differ only in which close
codes mean the *server* refused what the peer sent. Two lessons are kept here
once for every leg:

- a close with 1002/1007/1009 (RFC 6455 §7.4.1: protocol error, invalid
  payload, message too big; uvicorn closes with them when a frame breaks its
  limits) is bad input, not a hang-up: :meth:`StarletteSocket.refused` turns it
  into the leg's protocol error;
- a send fails as soon as the peer's close frame has been processed, possibly
  before the reader has taken the messages queued ahead of it (Twilio's
  ``stop``): a failed send stops further sends only, so the reader still reads
  what came before the disconnect (found by the rolling-restart test).
"""

from __future__ import annotations

import contextlib

from starlette.websockets import WebSocket, WebSocketDisconnect

from phonebridge.errors import RemoteProtocolError

BROKEN_BY_PEER = frozenset({1002, 1007, 1009})


class StarletteSocket:
    """A Starlette WebSocket that reads ``None`` once closed and never raises on send."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket
        self._closed = False  # the disconnect was read, or we closed the socket
        self._send_failed = False

    def refused(self, code: int | None) -> RemoteProtocolError | None:
        """The error a close with ``code`` stands for; ``None``: an ordinary close."""
        if code in BROKEN_BY_PEER:
            return RemoteProtocolError(f"socket closed with code {code}")
        return None

    async def receive(self) -> str | bytes | None:
        """The next message; ``None`` once closed. Raises :meth:`refused`'s error."""
        if self._closed:
            return None
        try:
            message = await self._ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            self._closed = True
            return None
        if message["type"] == "websocket.disconnect":
            self._closed = True
            error = self.refused(message.get("code"))
            if error is not None:
                raise error
            return None
        text = message.get("text")
        if text is not None:
            return str(text)
        return bytes(message.get("bytes") or b"")

    async def send_text(self, text: str) -> None:
        if self._closed or self._send_failed:
            return
        try:
            await self._ws.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._send_failed = True  # the peer is gone; the reader ends the call

    async def send_bytes(self, data: bytes) -> None:
        if self._closed or self._send_failed:
            return
        try:
            await self._ws.send_bytes(data)
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._send_failed = True

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self._ws.close(code, reason)
