"""A hand-driven Twilio stream, for sending what Twilio would never send.

TEST DOUBLE (PROTOCOLS.md §1.1, §1.4). :func:`dial` plays a well-behaved
Twilio; fault tests need the same signed set-up (webhook, TwiML, signed
``wss://`` upgrade) and then full control of the socket: malformed JSON,
binary frames, a foreign ``streamSid``, oversize messages, floods, a socket
dropped without ``stop``. :func:`raw_stream` does the set-up as Twilio does
and hands over a :class:`RawStream`; :meth:`RawStream.ask_action` then
requests the ``<Connect action>`` URL, as Twilio does once the bridge closed
the stream.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from phonebridge.simulators.phone.routes import Routes
from phonebridge.simulators.phone.twiml_reader import TwimlAnswer, read_twiml
from phonebridge.simulators.phone.wire import TwilioStreamWriter
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign


class RawCallRefused(Exception):
    """The webhook did not answer with ``<Connect><Stream>`` (busy, not in service...)."""


@dataclass(slots=True)
class RawStream:
    """One signed, accepted media socket, driven by hand."""

    socket: ClientConnection
    writer: TwilioStreamWriter
    answer: TwimlAnswer
    routes: Routes
    auth_token: str
    call_params: dict[str, str]
    http: httpx.AsyncClient
    received: list[str | bytes] = field(default_factory=list)

    @property
    def call_sid(self) -> str:
        return self.writer.call_sid

    @property
    def stream_sid(self) -> str:
        return self.writer.stream_sid

    async def send(self, message: str | bytes) -> bool:
        """Send one frame; False when the bridge already closed the socket."""
        try:
            await self.socket.send(message)
        except ConnectionClosed:
            return False
        return True

    async def start(self) -> None:
        """``connected`` then ``start`` with the TwiML's ``<Parameter>`` values."""
        await self.send(self.writer.connected())
        await self.send(self.writer.start(self.answer.parameters))

    async def media(self, mulaw: bytes, timestamp_ms: int = 0) -> bool:
        return await self.send(self.writer.media(mulaw, timestamp_ms))

    async def stop(self) -> bool:
        return await self.send(self.writer.stop())

    async def wait_closed(self) -> int | None:
        """Read (and keep) what the bridge sends until it closes; the close code."""
        with contextlib.suppress(ConnectionClosed):
            async for message in self.socket:
                self.received.append(message)
        return self.socket.close_code

    async def ask_action(self) -> httpx.Response:
        """POST the signed ``<Connect action>`` URL, as Twilio does after the stream."""
        url = self.answer.action_url
        assert url is not None, "the TwiML named no <Connect action>"
        params = {**self.call_params, "CallStatus": "in-progress"}
        return await self.http.post(
            self.routes.http(url),
            data=params,
            headers={SIGNATURE_HEADER: sign(self.auth_token, url, params)},
        )


@contextlib.asynccontextmanager
async def raw_stream(
    bridge_url: str,
    *,
    public_url: str,
    to: str,
    auth_token: str,
    from_: str = "+15005550006",
    call_sid: str | None = None,
    send_start: bool = True,
    max_size: int | None = 1 << 20,
) -> AsyncIterator[RawStream]:
    """The signed webhook and the signed upgrade; ``connected`` + ``start`` unless told not.

    Raises :class:`RawCallRefused` when the webhook's TwiML connects no stream.
    The socket is closed (without ``stop``) on exit if still open.
    """
    routes = Routes(public_url, bridge_url)
    call_sid = call_sid or "CA" + secrets.token_hex(16)
    account_sid = "AC" + secrets.token_hex(16)
    params = {
        "CallSid": call_sid,
        "AccountSid": account_sid,
        "From": from_,
        "To": to,
        "Called": to,
        "Caller": from_,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    webhook = public_url.rstrip("/") + "/twilio/voice"
    async with httpx.AsyncClient(timeout=10.0) as http:
        response = await http.post(
            routes.http(webhook),
            data=params,
            headers={SIGNATURE_HEADER: sign(auth_token, webhook, params)},
        )
        answer = read_twiml(response.text, response.headers.get("content-type"))
        if answer.stream_url is None:
            raise RawCallRefused(response.text)
        socket = await connect(
            routes.websocket(answer.stream_url),
            additional_headers={SIGNATURE_HEADER: sign(auth_token, answer.stream_url, {})},
            ping_interval=None,
            compression=None,
            max_size=max_size,
            open_timeout=10.0,
            close_timeout=10.0,
        )
        async with socket:
            writer = TwilioStreamWriter("MZ" + secrets.token_hex(16), account_sid, call_sid)
            stream = RawStream(socket, writer, answer, routes, auth_token, params, http)
            if send_start:
                await stream.start()
            yield stream
