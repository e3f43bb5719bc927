"""The Starlette media socket adapter: a failed send must not hide a queued ``stop``."""

from __future__ import annotations

from typing import Any, cast

from fastapi import WebSocket

from phonebridge.web.twilio_routes import StarlettePhone


class _ClosingSocket:
    """A socket whose caller sent ``stop`` and then a close frame (already processed)."""

    def __init__(self) -> None:
        self.inbox: list[dict[str, Any]] = [
            {"type": "websocket.receive", "text": '{"event":"stop"}'},
            {"type": "websocket.disconnect", "code": 1000},
        ]
        self.sent = 0

    async def receive(self) -> dict[str, Any]:
        return self.inbox.pop(0)

    async def send_text(self, text: str) -> None:
        self.sent += 1
        raise RuntimeError('Cannot call "send" once a close message has been sent.')


async def test_a_failed_send_leaves_the_queued_stop_for_the_reader() -> None:
    fake = _ClosingSocket()
    phone = StarlettePhone(cast(WebSocket, fake))
    await phone.send_text("media")  # fails: the caller's close frame is in
    await phone.send_text("media")  # not tried again
    assert fake.sent == 1
    assert await phone.receive() == '{"event":"stop"}'  # the hang-up, not a drop
    assert await phone.receive() is None
    assert await phone.receive() is None
