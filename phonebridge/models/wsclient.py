"""The thin websockets edge shared by every PersonaPlex provider (models/base.py contract).

A :class:`WebSocketModelSession` owns one socket and one sans-I/O protocol
core (:class:`WireProtocol`); everything provider-specific (URL, auth,
framing, what a close means) lives in the core or in the subclass. This
layer only moves bytes, keeps time with the injected clock and turns socket
failures into the error tree.

Choices that matter on the wire:

- ``ping_interval=None``: the self-hosted server and PolarGrid's runtime never
  answer pings (PROTOCOLS.md §2.2, §3), so a keepalive would kill healthy calls.
- ``compression=None``: Opus and PCM do not deflate; compressing costs CPU.
- a short ``close_timeout``: :meth:`close` must not hang on a dead peer while
  a hosted provider bills the open socket.
- ``max_size`` bounds one received message (the server sends 80 ms pages).
- a 429 holds the provider's :class:`~phonebridge.models.retry_gate.RetryGate`
  (shared by its sessions) for the ``Retry-After`` wait: no upgrade until then.
  The header may be delta-seconds or an HTTP date (RFC 9110 §10.2.3); a date
  is turned into a wait with the injected ``wall_clock`` (epoch seconds), and
  the gate keeps time with the monotonic ``clock``, which never jumps.
- websockets logs every upgrade header at DEBUG; its logger is wrapped in a
  :class:`~phonebridge.models.redact.RedactingLogger` so keys never reach logs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from phonebridge.errors import (
    HandshakeTimeout,
    LocalProtocolError,
    ModelError,
    ModelRateLimited,
    ModelUnavailable,
    RemoteProtocolError,
)
from phonebridge.models.base import (
    AgentAudio,
    AgentText,
    EndReason,
    ModelEvent,
    SessionEnded,
    SessionTimings,
)
from phonebridge.models.personaplex_protocol import Ready, WireEvent, describe_close
from phonebridge.models.redact import RedactingLogger, redact, redact_url
from phonebridge.models.retry_gate import RetryGate
from phonebridge.models.upgrade_errors import error_for_status

Clock = Callable[[], float]

DEFAULT_OPEN_TIMEOUT = 10.0
DEFAULT_CLOSE_TIMEOUT = 1.0
DEFAULT_SEND_TIMEOUT = 2.0
# Half of websockets' default write limit (2**15): below it a send never waits.
UNCONGESTED_BYTES = 16 * 1024
# An 80 ms Opus page is a few hundred bytes and an 80 ms PCM message ~4 KB;
# 1 MiB leaves room for anything sane and bounds a misbehaving peer.
DEFAULT_MAX_MESSAGE_BYTES = 2**20


class WireProtocol(Protocol):
    """What a provider's sans-I/O core offers this edge."""

    ready: bool
    frame_bytes: int  # one 20 ms frame at the leg's rate: what encode_audio takes

    def on_open(self) -> None: ...

    def receive(self, message: bytes | str) -> list[WireEvent]: ...

    def encode_audio(self, pcm: bytes) -> list[bytes]: ...

    def end_for_close(self, code: int | None, reason: str) -> SessionEnded: ...


class WebSocketModelSession:
    """One model conversation over one WebSocket; subclasses pick URL, auth and core."""

    provider: str = "unknown"
    supports_end_of_turn: bool = False
    supports_text_injection: bool = False

    def __init__(
        self,
        *,
        url: str,
        protocol: WireProtocol,
        clock: Clock,
        handshake_timeout: float | None,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        subprotocols: Sequence[str] = (),
        headers: dict[str, str] | None = None,
        secrets: Sequence[str] = (),
        logger: logging.Logger | None = None,
        retry_gate: RetryGate | None = None,
        wall_clock: Clock = time.time,
    ) -> None:
        self._url = url
        self._wall_clock = wall_clock  # only to read an HTTP-date Retry-After
        self._retry_gate = retry_gate  # shared by the provider's sessions (429 Retry-After)
        self._protocol = protocol
        self._clock = clock
        self._handshake_timeout = handshake_timeout
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout
        self._send_timeout = send_timeout
        self._max_message_bytes = max_message_bytes
        self._subprotocols = [Subprotocol(s) for s in subprotocols]
        self._headers = dict(headers or {})
        self._secrets = tuple(s for s in secrets if s)
        base_logger = logger or logging.getLogger(f"phonebridge.models.{self.provider}")
        self._log = RedactingLogger(base_logger, self._secrets)
        self._ws: ClientConnection | None = None
        self._opened = False
        self._iterating = False
        self._pending: deque[ModelEvent] = deque()
        self._end: SessionEnded | None = None
        self.timings = SessionTimings()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {redact_url(redact(self._url, self._secrets))}>"

    # -- opening ----------------------------------------------------------------

    async def open(self) -> None:
        """Connect, then wait for the model to be ready; raises a ModelError subclass."""
        if self._opened:
            raise LocalProtocolError("open() may be called once per session")
        self._opened = True
        self.timings.started = self._clock()
        if self._retry_gate is not None:
            await self._retry_gate.check(self.timings.started)  # no socket while told to wait
        self._ws = await self._connect()
        self.timings.connected = self._clock()
        self._protocol.on_open()
        try:
            await self._wait_until_ready()
        except BaseException:
            # Whatever went wrong (including cancellation), the socket must not
            # outlive a failed open: hosted providers bill while it is open.
            await self._close_socket()
            raise
        self.timings.ready = self._clock()
        self._log.debug("%s session ready", self.provider)

    async def _connect(self) -> ClientConnection:
        shown = redact_url(redact(self._url, self._secrets))
        try:
            return await connect(
                self._url,
                subprotocols=self._subprotocols or None,
                additional_headers=self._headers or None,
                compression=None,
                open_timeout=self._open_timeout,
                ping_interval=None,
                ping_timeout=None,
                close_timeout=self._close_timeout,
                max_size=self._max_message_bytes,
                logger=self._log,
            )
        except InvalidStatus as exc:
            response = exc.response
            retry_after = response.headers.get("Retry-After")
            error = error_for_status(
                self.provider, response.status_code, retry_after, now_epoch=self._wall_clock()
            )
            if isinstance(error, ModelRateLimited) and self._retry_gate is not None:
                await self._retry_gate.hold(self._clock(), error.retry_after)
            raise error from None
        except InvalidURI:
            # The message would quote the URL, key included: say less.
            raise ModelUnavailable(f"{self.provider}: invalid URL {shown}") from None
        except InvalidHandshake as exc:
            detail = redact(str(exc), self._secrets)
            raise ModelUnavailable(
                f"{self.provider}: upgrade failed at {shown}: {detail}"
            ) from None
        except TimeoutError:
            raise ModelUnavailable(f"{self.provider}: upgrade timed out at {shown}") from None
        except OSError as exc:
            detail = redact(str(exc), self._secrets)
            raise ModelUnavailable(
                f"{self.provider}: cannot connect to {shown}: {detail}"
            ) from None

    async def _wait_until_ready(self) -> None:
        ws = self._ws
        assert ws is not None
        try:
            async with asyncio.timeout(self._handshake_timeout):
                while not self._protocol.ready:
                    message = await ws.recv()
                    for event in self._protocol.receive(message):
                        if isinstance(event, SessionEnded):
                            self._set_end(event)
                            raise ModelUnavailable(f"{self.provider}: {event.detail}")
                        if not isinstance(event, Ready):
                            self._pending.append(event)
        except TimeoutError:
            self._set_end(SessionEnded(EndReason.TIMEOUT, "no handshake"))
            raise self._handshake_error() from None
        except ConnectionClosed as exc:
            if self._end is not None and self._end.reason is EndReason.CLOSED_BY_US:
                raise ModelError(f"{self.provider}: closed before the model was ready") from None
            code, reason = _close_info(exc)
            self._set_end(self._protocol.end_for_close(code, reason))
            self._note_closed()
            raise ModelUnavailable(
                f"{self.provider}: the server closed the socket before the handshake "
                f"({describe_close(code, reason)})"
            ) from None
        except RemoteProtocolError as exc:
            self._set_end(SessionEnded(EndReason.PROTOCOL_ERROR, str(exc)))
            raise ModelUnavailable(f"{self.provider}: {exc}") from None

    def _handshake_error(self) -> ModelError:
        """The error for a handshake that never came; subclasses say what it likely means."""
        return HandshakeTimeout(
            f"{self.provider}: no handshake within {self._handshake_timeout:g} s"
        )

    # -- the conversation ---------------------------------------------------------

    async def send_audio(self, pcm: bytes) -> None:
        """Send one 20 ms frame at the leg's rate; a no-op before ready and after the end."""
        size = self._protocol.frame_bytes
        if len(pcm) != size:
            raise LocalProtocolError(f"send one 20 ms frame ({size} bytes), got {len(pcm)}")
        if self._live():
            await self._send_frames(self._protocol.encode_audio(pcm))

    def _live(self) -> bool:
        # Before ready, audio is dropped, never queued (§2.6); after the end,
        # events() reports why, so sending is a silent no-op.
        return self._ws is not None and self._end is None and self._protocol.ready

    async def _send_frames(self, frames: list[bytes]) -> None:
        ws = self._ws
        assert ws is not None
        for frame in frames:
            try:
                if ws.transport.get_write_buffer_size() + len(frame) < UNCONGESTED_BYTES:
                    # send() can only wait when the transport's buffer passes
                    # websockets' write limit (32 KiB); well below it, it
                    # appends and returns, so there is no wait to bound.
                    # Arming a timer for every 20 ms frame showed up in the
                    # load profile.
                    await ws.send(frame)
                    continue
                async with asyncio.timeout(self._send_timeout):
                    await ws.send(frame)
            except ConnectionClosed:
                return  # the reader reports the close with its reason
            except TimeoutError:
                # The peer stopped reading: it is dead or wedged, and audio we
                # cannot deliver in real time is worthless anyway.
                self._set_end(SessionEnded(EndReason.TIMEOUT, "the server stopped reading"))
                await self._close_socket()
                return

    async def events(self) -> AsyncIterator[ModelEvent]:
        """Agent audio and text as they arrive, then exactly one SessionEnded."""
        if self._iterating:
            raise LocalProtocolError("events() supports a single consumer")
        if not self._opened:
            raise LocalProtocolError("events() before open()")
        self._iterating = True
        while self._pending and self._end is None:
            yield self._pending.popleft()
        ws = self._ws
        while self._end is None and ws is not None:
            try:
                message = await ws.recv()
            except ConnectionClosed as exc:
                self._note_closed()
                self._set_end(self._protocol.end_for_close(*_close_info(exc)))
                break
            try:
                received = self._protocol.receive(message)
            except RemoteProtocolError as exc:
                self._set_end(SessionEnded(EndReason.PROTOCOL_ERROR, str(exc)))
                await self._close_socket()
                break
            for event in received:
                if self._end is not None:
                    break
                if isinstance(event, SessionEnded):
                    self._set_end(event)
                    await self._close_socket()
                elif isinstance(event, AgentAudio):
                    if self.timings.first_audio is None:
                        self.timings.first_audio = self._clock()
                    yield event
                elif isinstance(event, AgentText):
                    yield event
        assert self._end is not None
        yield self._end

    # -- closing ------------------------------------------------------------------

    async def close(self) -> None:
        """Close the socket now; idempotent and safe from any task."""
        self._set_end(SessionEnded(EndReason.CLOSED_BY_US))
        await self._close_socket()

    def _set_end(self, ended: SessionEnded) -> None:
        if self._end is None:  # the first cause wins; later ones are consequences
            self._end = ended
            if ended.reason is not EndReason.CLOSED_BY_US:
                self._log.info("%s session ended: %s %s", self.provider, ended.reason, ended.detail)

    async def _close_socket(self) -> None:
        ws = self._ws
        if ws is None:
            return
        try:
            # Bounded by close_timeout: a dead peer gets its TCP connection aborted.
            await ws.close()
        finally:
            self._note_closed()

    def _note_closed(self) -> None:
        if self.timings.closed is None:
            self.timings.closed = self._clock()


def _close_info(exc: ConnectionClosed) -> tuple[int | None, str]:
    """The peer's close code and reason; ``None`` when it sent no close frame (1006)."""
    if exc.rcvd is None:
        return None, ""
    return exc.rcvd.code, exc.rcvd.reason
