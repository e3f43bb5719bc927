"""One simulated phone call against a bridge, over real HTTP and WebSocket.

TEST DOUBLE for Twilio (PROTOCOLS.md §1). The sequence is Twilio's:

1. POST the signed voice webhook (form-encoded) to ``{bridge}/twilio/voice``.
2. Follow the TwiML: ``<Say>``/``<Dial>``/``<Hangup>`` answers end here and are
   recorded; ``<Connect><Stream>`` opens the WebSocket with
   ``X-Twilio-Signature`` over the ``wss://`` URL exactly as written.
3. Send ``connected``, ``start`` (``customParameters`` from the
   ``<Parameter>``s), then the caller's line (:mod:`.script`), DTMF, and
   ``stop`` when the caller hangs up. Meanwhile play what the bridge sends
   through :class:`.playback.PlaybackBuffer` in real time, echoing marks, and
   reject what Twilio rejects (the socket is closed with 1002 and the error
   recorded with Twilio's code).
4. When the *bridge* ended the stream (closed the socket, broke the protocol,
   or the stream never opened), POST the signed ``<Connect action>`` URL and
   record its TwiML, as Twilio continues the call there. When the caller hung
   up there is no call left to continue, so no action request is made.

``fast`` runs the caller's timeline without waiting (virtual time); playback of
the bridge's audio always runs on the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from phonebridge.simulators.phone import wire
from phonebridge.simulators.phone.audio_files import read_wav_as_mulaw, write_mulaw_as_wav
from phonebridge.simulators.phone.playback import BYTES_PER_MS, PlaybackBuffer
from phonebridge.simulators.phone.report import DialReport, ProtocolErrorRecord
from phonebridge.simulators.phone.routes import Routes
from phonebridge.simulators.phone.script import (
    HangUp,
    SendDtmf,
    SendMedia,
    caller_timeline,
    hangup_time,
    split_frames,
)
from phonebridge.simulators.phone.twiml_reader import TwimlAnswer, TwimlRejectedError, read_twiml
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign

DEV_AUTH_TOKEN = "phonebridge-dev-auth-token"  # noqa: S105 (public dev value)
"""Auth token for local development only (``phonebridge dial --dev-token``); not a secret."""

HTTP_RETRIEVAL_FAILURE = 11200
PLAYBACK_TICK_SECONDS = 0.02
PROTOCOL_ERROR_CLOSE = 1002  # RFC 6455 §7.4.1

_ENDS_THAT_CONTINUE_THE_CALL = frozenset({"bridge", "protocol_error", "stream_failed"})


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


async def dial(
    bridge_url: str,
    *,
    to: str,
    from_: str = "+15005550006",
    auth_token: str,
    audio: Path | bytes | None = None,
    out: Path | None = None,
    fast: bool = False,
    gaps: Sequence[tuple[float, float]] = (),
    dtmf: Sequence[tuple[float, str]] = (),
    hangup_after: float | None = None,
    send_stop: bool = True,
    tail: float = 2.0,
    max_call: float = 600.0,
    call_sid: str | None = None,
    account_sid: str | None = None,
    public_url: str | None = None,
    connect_override: str | None = None,
    io_timeout: float = 10.0,
    webhook_url: str | None = None,
    direction: str = "inbound",
) -> DialReport:
    """Place one call to ``bridge_url`` as Twilio would; see the module docstring.

    ``audio`` is a WAV path or raw 8 kHz mu-law bytes (None: a silent caller).
    ``gaps`` are ``(start, duration)`` seconds with no media at all; ``dtmf`` are
    ``(time, digits)``. The caller hangs up at ``hangup_after``, else ``tail``
    seconds after the recording ends, and never later than ``max_call``
    (``send_stop=False``: the socket is dropped without a ``stop``).
    ``public_url`` is the base URL Twilio is configured with (default
    ``bridge_url``): webhooks and the stream are signed with public URLs and
    sent to the local ones (``connect_override`` forces the stream's).
    ``io_timeout`` bounds each HTTP request, the upgrade and the closing handshake.
    ``webhook_url`` (public) replaces ``/twilio/voice``: an outbound call's answer
    URL, fetched with ``direction="outbound-api"`` as Twilio does when the callee answers.
    """
    mulaw = read_wav_as_mulaw(audio) if isinstance(audio, Path) else audio or b""
    call = _Call(
        routes=Routes(public_url or bridge_url, bridge_url, connect_override),
        auth_token=auth_token,
        report=DialReport(
            call_sid=call_sid or _sid("CA"),
            account_sid=account_sid or _sid("AC"),
            stream_sid=_sid("MZ"),
            to=to,
            from_=from_,
        ),
        frames=split_frames(mulaw),
        fast=fast,
        gaps=gaps,
        dtmf=dtmf,
        hangup_after=hangup_after,
        send_stop=send_stop,
        tail=tail,
        max_call=max_call,
        timeout=io_timeout,
    )
    call.webhook_url = webhook_url
    call.direction = direction
    report = await call.run()
    if out is not None:
        write_mulaw_as_wav(out, bytes(call.heard))
        report.heard_path = str(out)
    return report


class _Call:
    def __init__(
        self,
        *,
        routes: Routes,
        auth_token: str,
        report: DialReport,
        frames: list[bytes],
        fast: bool,
        gaps: Sequence[tuple[float, float]],
        dtmf: Sequence[tuple[float, str]],
        hangup_after: float | None,
        send_stop: bool,
        tail: float,
        max_call: float,
        timeout: float,
    ) -> None:
        self.routes = routes
        self.auth_token = auth_token
        self.report = report
        self.frames = frames
        self.fast = fast
        self.gaps = gaps
        self.dtmf = dtmf
        self.end = hangup_time(len(frames), hangup_after, tail, max_call)
        self.send_stop = send_stop
        self.timeout = timeout
        self.heard = bytearray()
        self.playback = PlaybackBuffer()
        self.writer = wire.TwilioStreamWriter(
            report.stream_sid, report.account_sid, report.call_sid
        )
        self.send_lock = asyncio.Lock()
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.stream_t0: float | None = None
        self.played_bytes = 0
        self.webhook_url: str | None = None
        self.direction = "inbound"

    # ---------------------------------------------------------------- bookkeeping

    def now(self) -> float:
        return round(self.loop.time() - self.t0, 4)

    def error(self, code: int, message: str) -> None:
        self.report.protocol_errors.append(ProtocolErrorRecord(code, message, self.now()))

    def ended(self, by: str) -> None:
        if not self.report.ended_by:
            self.report.ended_by = by
            self.report.ended_at_s = self.now()

    def call_params(self, status: str) -> dict[str, str]:
        r = self.report
        return {
            "CallSid": r.call_sid,
            "AccountSid": r.account_sid,
            "From": r.from_,
            "To": r.to,
            "Called": r.to,
            "Caller": r.from_,
            "CallStatus": status,
            "Direction": self.direction,
            "ApiVersion": "2010-04-01",
        }

    # ---------------------------------------------------------------- HTTP side

    async def run(self) -> DialReport:
        async with httpx.AsyncClient(timeout=self.timeout) as http:
            webhook = self.webhook_url or self.routes.public_base.rstrip("/") + "/twilio/voice"
            status = "in-progress" if self.direction != "inbound" else "ringing"
            answer = await self.fetch_twiml(http, webhook, self.call_params(status), True)
            if answer is None:
                self.ended("webhook_failed")
            elif not answer.connects_stream:
                self.ended("twiml")
            else:
                await self.stream(answer)
                if answer.action_url and self.report.ended_by in _ENDS_THAT_CONTINUE_THE_CALL:
                    await self.fetch_twiml(
                        http, answer.action_url, self.call_params("in-progress"), False
                    )
        self.report.heard_seconds = len(self.heard) / (BYTES_PER_MS * 1000)
        self.report.agent_audio_seconds = self.report.bytes_received / (BYTES_PER_MS * 1000)
        return self.report

    async def fetch_twiml(
        self, http: httpx.AsyncClient, url: str, params: dict[str, str], is_webhook: bool
    ) -> TwimlAnswer | None:
        headers = {
            SIGNATURE_HEADER: sign(self.auth_token, url, params),
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        }
        if not is_webhook:
            self.report.action_url = url
        try:
            response = await http.post(self.routes.http(url), data=params, headers=headers)
        except httpx.HTTPError as exc:
            self.error(HTTP_RETRIEVAL_FAILURE, f"POST {url} failed: {exc!r}")
            return None
        if is_webhook:
            self.report.webhook_status = response.status_code
        else:
            self.report.action_status = response.status_code
            self.report.action_answer = response.text
        if response.status_code != 200:
            self.error(HTTP_RETRIEVAL_FAILURE, f"POST {url}: HTTP {response.status_code}")
            return None
        self.report.twiml_answers.append(response.text)
        try:
            answer = read_twiml(response.text, response.headers.get("content-type"))
        except TwimlRejectedError as exc:
            self.error(exc.code, str(exc))
            return None
        self.report.twiml_verbs.extend(answer.verbs)
        self.report.said.extend(answer.said)
        self.report.dialled.extend(answer.dialled)
        return answer

    # ---------------------------------------------------------------- the stream

    async def stream(self, answer: TwimlAnswer) -> None:
        url = answer.stream_url or ""
        self.report.stream_url = url
        self.report.custom_parameters = dict(answer.parameters)
        parts = urlsplit(url)
        if parts.scheme != "wss":
            self.error(wire.URL_SCHEME_NOT_SUPPORTED, f"<Stream url> {url!r} is not wss://")
            self.ended("stream_failed")
            return
        if parts.query:
            self.error(wire.HANDSHAKE_ERROR, f"<Stream url> {url!r} carries a query string")
            self.ended("stream_failed")
            return
        local = self.routes.websocket(url)
        self.report.connected_url = local
        headers = {SIGNATURE_HEADER: sign(self.auth_token, url, {})}
        try:
            socket = await connect(
                local,
                additional_headers=headers,
                open_timeout=self.timeout,
                close_timeout=self.timeout,
                ping_interval=None,
                compression=None,
            )
        except InvalidStatus as exc:
            self.report.upgrade_status = exc.response.status_code
            self.error(wire.HANDSHAKE_ERROR, f"upgrade answered HTTP {exc.response.status_code}")
            self.ended("stream_failed")
            return
        except TimeoutError as exc:
            self.error(wire.CONNECTION_TIMEOUT, f"no answer from {local}: {exc!r}")
            self.ended("stream_failed")
            return
        except (OSError, InvalidHandshake) as exc:
            self.error(wire.CONNECTION_REFUSED, f"cannot open {local}: {exc!r}")
            self.ended("stream_failed")
            return
        self.report.upgrade_status = 101
        async with socket:
            await self.converse(socket, answer.parameters)
        self.report.close_code = socket.close_code
        self.report.close_reason = socket.close_reason or ""

    async def send(self, socket: ClientConnection, build: Callable[[], str]) -> None:
        # Build under the lock so sequence numbers reach the wire in order.
        async with self.send_lock:
            await socket.send(build())

    async def converse(self, socket: ClientConnection, parameters: dict[str, str]) -> None:
        await socket.send(self.writer.connected())
        await self.send(socket, lambda: self.writer.start(parameters))
        self.stream_t0 = self.loop.time()
        speaker = asyncio.create_task(self.speak(socket))
        listener = asyncio.create_task(self.listen(socket))
        player = asyncio.create_task(self.play(socket))
        try:
            await asyncio.wait({speaker, listener}, return_when=asyncio.FIRST_COMPLETED)
            if listener.done():
                speaker.cancel()
            await socket.close()
            await asyncio.wait({listener}, timeout=self.timeout)
        finally:
            for task in (speaker, listener, player):
                task.cancel()
            results = await asyncio.gather(speaker, listener, player, return_exceptions=True)
            self.advance_playback()
            self.report.stream_duration_s = round(self.loop.time() - self.stream_t0, 4)
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, ConnectionClosed):
                raise result

    async def speak(self, socket: ClientConnection) -> None:
        """The caller's line: media, gaps, DTMF, then the hang-up."""
        assert self.stream_t0 is not None
        timeline = caller_timeline(self.frames, end=self.end, gaps=self.gaps, dtmf=self.dtmf)
        for action in timeline:
            if self.fast:
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(max(0.0, self.stream_t0 + action.at - self.loop.time()))
            match action:
                case SendMedia(payload=payload, timestamp_ms=timestamp_ms):
                    await self.send(socket, lambda: self.writer.media(payload, timestamp_ms))
                    self.report.frames_sent += 1
                    self.report.bytes_sent += len(payload)
                case SendDtmf(digit=digit):
                    await self.send(socket, lambda: self.writer.dtmf(digit))
                    self.report.dtmf_sent.append(digit)
                case HangUp():
                    if self.send_stop:
                        self.ended("caller")
                        await self.send(socket, self.writer.stop)
                    else:
                        self.ended("caller_dropped")
                    return

    async def listen(self, socket: ClientConnection) -> None:
        """What the bridge sends, judged as Twilio judges it."""
        try:
            async for raw in socket:
                try:
                    message = wire.parse_app_message(raw, self.report.stream_sid)
                except wire.StreamRejectedError as exc:
                    self.error(exc.code, str(exc))
                    self.ended("protocol_error")
                    await socket.close(PROTOCOL_ERROR_CLOSE, f"Twilio error {exc.code}")
                    return
                await self.handle(socket, message)
        except ConnectionClosed as exc:
            if exc.rcvd is None and exc.sent is None:
                self.error(wire.WEBSOCKET_PROTOCOL_ERROR, f"socket dropped: {exc!r}")
        finally:
            self.ended("bridge")

    async def handle(self, socket: ClientConnection, message: wire.AppMessage) -> None:
        match message:
            case wire.AppMedia(payload=payload):
                if self.report.first_agent_audio_after_start_s is None:
                    assert self.stream_t0 is not None
                    elapsed = self.loop.time() - self.stream_t0
                    self.report.first_agent_audio_after_start_s = round(elapsed, 4)
                self.report.frames_received += 1
                self.report.bytes_received += len(payload)
                self.advance_playback()  # the buffer's clock runs before new audio joins it
                if not self.playback.enqueue_audio(payload):
                    self.error(wire.BUFFER_OVERFLOW, "over 10 minutes of audio buffered")
            case wire.AppMark(name=name):
                self.report.marks_received.append(name)
                self.advance_playback()
                await self.echo(socket, self.playback.enqueue_mark(name))
            case wire.AppClear():
                self.report.clears_received += 1
                self.advance_playback()
                await self.echo(socket, self.playback.clear())

    async def echo(self, socket: ClientConnection, marks: list[str]) -> None:
        for name in marks:
            self.report.marks_echoed.append(name)
            await self.send(socket, functools.partial(self.writer.mark, name))

    async def play(self, socket: ClientConnection) -> None:
        """Twilio's playback clock: consume the buffer in real time, echo reached marks."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(PLAYBACK_TICK_SECONDS)
                await self.echo(socket, self.advance_playback())

    def advance_playback(self) -> list[str]:
        """Play the buffer up to now; returns the marks reached."""
        assert self.stream_t0 is not None
        target = int((self.loop.time() - self.stream_t0) * 1000 * BYTES_PER_MS)
        heard, marks = self.playback.play(max(0, target - self.played_bytes))
        self.played_bytes += len(heard)
        self.heard += heard
        return marks
