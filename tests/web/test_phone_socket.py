"""The Starlette socket adapter every leg uses (web/websocket_io.py).

A failed send must not hide a message queued before the peer's close (Twilio's
``stop``), and a close with a refusal code is the leg's protocol error, not a
hang-up.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from fastapi import WebSocket

from phonebridge.errors import RemoteProtocolError
from phonebridge.web.carriers.common import StarletteMedia
from phonebridge.web.softphone.leg import StarletteBrowserSocket
from phonebridge.web.softphone.protocol import BrowserProtocolError
from phonebridge.web.twilio_routes import StarlettePhone
from phonebridge.web.websocket_io import StarletteSocket

ADAPTERS = [StarlettePhone, StarletteMedia, StarletteBrowserSocket]


class _ClosingSocket:
    """A socket whose peer sent a last message and then a close frame (already processed)."""

    def __init__(self, close_code: int = 1000) -> None:
        self.inbox: list[dict[str, Any]] = [
            {"type": "websocket.receive", "text": '{"event":"stop"}'},
            {"type": "websocket.disconnect", "code": close_code},
        ]
        self.sent = 0

    async def receive(self) -> dict[str, Any]:
        return self.inbox.pop(0)

    async def send_text(self, text: str) -> None:
        self.sent += 1
        raise RuntimeError('Cannot call "send" once a close message has been sent.')

    async def send_bytes(self, data: bytes) -> None:
        self.sent += 1
        raise RuntimeError('Cannot call "send" once a close message has been sent.')


@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_a_failed_send_leaves_the_queued_message_for_the_reader(
    adapter: type[StarletteSocket],
) -> None:
    fake = _ClosingSocket()
    socket = adapter(cast(WebSocket, fake))
    await socket.send_text("media")  # fails: the peer's close frame is in
    await socket.send_bytes(b"media")  # not tried again
    assert fake.sent == 1
    assert await socket.receive() == '{"event":"stop"}'  # the hang-up, not a drop
    assert await socket.receive() is None
    assert await socket.receive() is None


@pytest.mark.parametrize("adapter", [StarlettePhone, StarletteMedia])
@pytest.mark.parametrize("code", [1002, 1007, 1009])
async def test_a_phone_socket_refused_by_the_server_is_a_protocol_error(
    adapter: type[StarletteSocket], code: int
) -> None:
    socket = adapter(cast(WebSocket, _ClosingSocket(code)))
    await socket.receive()
    with pytest.raises(RemoteProtocolError, match=str(code)):
        await socket.receive()


async def test_the_browser_socket_turns_only_an_oversize_frame_into_its_error() -> None:
    socket = StarletteBrowserSocket(cast(WebSocket, _ClosingSocket(1009)))
    await socket.receive()
    with pytest.raises(BrowserProtocolError):
        await socket.receive()
    ordinary = StarletteBrowserSocket(cast(WebSocket, _ClosingSocket(1002)))
    await ordinary.receive()
    assert await ordinary.receive() is None
