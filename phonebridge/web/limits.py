"""A ceiling on HTTP request bodies, enforced before any route reads them.

Starlette reads a form body whole (its URL-encoded parser only caps each field
at 1 MB and the field count at 1000), and the Twilio webhooks are public: a
10 MB POST to ``/twilio/voice`` would be read, parsed and signature-checked
before being refused. This ASGI middleware refuses it first, cheaply:

- a ``Content-Length`` above the limit is answered ``413`` without reading a
  byte of the body (RFC 9110 §15.5.14);
- a body without one (chunked) is read only up to the limit, then ``413``.

The limit is generous for what is legitimately posted here: a Twilio webhook
is a form of a few dozen fields (~2 KB); no dashboard or API route takes a
body at all. WebSocket messages are bounded elsewhere (uvicorn ``ws_max_size``,
see phonebridge/serve.py), and headers by h11 (16 KiB).
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_REQUEST_BODY_BYTES: Final = 64 * 1024


class BodySizeLimit:
    """ASGI middleware: HTTP request bodies larger than ``max_bytes`` get a 413."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_REQUEST_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await _refuse(send, 400, b"invalid Content-Length\n")
            return
        if declared is not None and declared > self.max_bytes:
            await _refuse(send, 413, b"request body too large\n")
            return
        # Read the body here (bounded), then hand it to the app in one piece:
        # the app never sees more than max_bytes, whatever the framing.
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > self.max_bytes:
                await _refuse(send, 413, b"request body too large\n")
                return
        first: Message = {"type": "http.request", "body": bytes(body), "more_body": False}
        await self.app(scope, _replay([first], receive), send)


def _content_length(scope: Scope) -> int | None:
    """The declared length; None if absent, -1 if not a single non-negative integer."""
    values = [value for name, value in scope["headers"] if name == b"content-length"]
    if not values:
        return None
    text = values[0].decode("latin-1").strip()
    if len(values) > 1 or not text.isdigit() or len(text) > 18:
        return -1
    return int(text)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()  # later calls: wait for the disconnect, as usual

    return replayed


async def _refuse(send: Send, status: int, text: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(text)).encode()),
                # The unread rest of the body makes the connection unusable.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": text})


__all__ = ["MAX_REQUEST_BODY_BYTES", "BodySizeLimit"]
