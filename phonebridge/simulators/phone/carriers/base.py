"""What every carrier flavour of the phone simulator shares — a TEST DOUBLE.

A flavour is two parts (CARRIERS.md §1-§5 for each carrier's facts):

- a sans-I/O :class:`CarrierWire`: the carrier's side of the media socket —
  the frames it sends (its opening, its media at its rate, codec and frame
  length, its DTMF, its mark acknowledgement, its end) and its judgement of
  each frame the app sends (:meth:`CarrierWire.judge`: a typed
  :data:`AppMessage`, or :class:`CarrierRejected` when the carrier would
  refuse it);
- a :class:`CarrierFlavour`: the carrier's HTTP side — the signed call
  webhook, reading the answer document (or, for Telnyx Call Control, the REST
  commands the bridge makes on :class:`~.rest.FakeCarrierApi`), the
  authenticated upgrade, and what the carrier does once the stream is over
  (status callbacks, the ``<Connect action>``, Vonage's ``disconnected``).

:class:`CarrierCall` is the I/O that drives both, built from the Twilio
simulator's pieces: the caller's timeline (:mod:`..script`), the playback
buffer (:mod:`..playback`, in PCM16 at the leg's rate), the report
(:mod:`..report`) and the public/local URL mapping (:mod:`..routes`).

``Auth`` modes let tests forge: ``valid`` signs as the carrier does,
``forged`` signs with a wrong key, ``missing`` sends no signature at all.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from phonebridge.audio.pcm import RatioResampler
from phonebridge.errors import RemoteProtocolError
from phonebridge.simulators.phone.playback import PlaybackBuffer
from phonebridge.simulators.phone.report import DialReport, ProtocolErrorRecord
from phonebridge.simulators.phone.routes import Routes
from phonebridge.simulators.phone.script import (
    HangUp,
    SendDtmf,
    SendMedia,
    caller_timeline,
    hangup_time,
)

Frame = str | bytes
Auth = Literal["valid", "forged", "missing"]
AUTH_MODES: tuple[Auth, ...] = ("valid", "forged", "missing")

PROTOCOL_ERROR_CLOSE = 1002  # RFC 6455 §7.4.1
PLAYBACK_TICK_SECONDS = 0.02
NO_CODE = 0  # the carrier documents no error code for this
DTMF_DIGITS = "0123456789*#ABCD"


def token(prefix: str = "") -> str:
    return prefix + secrets.token_hex(16)


def uuid_like() -> str:
    raw = secrets.token_hex(16)
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def forged(secret: str) -> str:
    """A wrong secret of the same shape (for ``Auth = "forged"``)."""
    return secret[::-1] + "x" if secret else "forged"


# --------------------------------------------------------------------------- app messages


@dataclass(frozen=True, slots=True)
class AppAudio:
    """Audio the app sent, as PCM16 little-endian at the leg's rate."""

    pcm16: bytes


@dataclass(frozen=True, slots=True)
class AppMark:
    name: str  # Vonage: the notify payload's JSON text


@dataclass(frozen=True, slots=True)
class AppClear:
    pass


@dataclass(frozen=True, slots=True)
class AppDtmf:
    digits: str  # tones the app asks the carrier to play (SignalWire, Plivo)


@dataclass(frozen=True, slots=True)
class AppIgnored:
    """Accepted and dropped, as the carrier drops it (Telnyx media in mp3 mode)."""

    reason: str


AppMessage = AppAudio | AppMark | AppClear | AppDtmf | AppIgnored


class CarrierRejected(RemoteProtocolError):
    """The app sent something this carrier refuses; ``code`` is its code (0: none)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def app_json(raw: Frame, carrier: str, code: int = NO_CODE) -> dict[str, Any]:
    """An app text frame as a JSON object, or :class:`CarrierRejected` (binary, bad JSON)."""
    if not isinstance(raw, str):
        raise CarrierRejected(code, f"binary frame ({carrier} takes JSON text)")
    return app_json_text(raw, code)


def app_json_text(raw: str | bytes, code: int = NO_CODE) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise CarrierRejected(code, f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CarrierRejected(code, "message is not a JSON object")
    return doc


def app_base64(value: object, where: str, code: int = NO_CODE) -> bytes:
    """A base64 payload the app sent, decoded strictly (or :class:`CarrierRejected`)."""
    if not isinstance(value, str):
        raise CarrierRejected(code, f"{where} must be a base64 string")
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise CarrierRejected(code, f"{where} is not base64: {exc}") from None


def app_l16(data: bytes, code: int = NO_CODE) -> bytes:
    if len(data) % 2:
        raise CarrierRejected(code, "L16 payload of an odd number of bytes")
    return data


def app_mark_name(mark: object, where: str, code: int = NO_CODE) -> str:
    """``mark.name`` of a Twilio-style ``{"mark": {"name": …}}`` (a non-empty string)."""
    name = mark.get("name") if isinstance(mark, dict) else None
    if not isinstance(name, str) or not name:
        raise CarrierRejected(code, f"{where} must be a string")
    return name


# --------------------------------------------------------------------------- the wire


class CarrierWire:
    """The carrier's side of one media socket, sans-I/O (subclassed per carrier)."""

    carrier: ClassVar[str] = "?"
    frame_ms: ClassVar[int] = 20  # caller audio per media message
    closes_on_reject: ClassVar[bool] = True  # False: an error event and the stream goes on
    echoes_marks_on_clear: ClassVar[bool] = True  # False: pending marks dropped, an ack sent
    max_buffered_ms: int = 10 * 60 * 1000

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.notes: list[str] = []  # tolerated app faults, in order
        self.sequence = 0  # the last sequence number sent (carriers that number frames)
        self.chunk = 0  # the last media chunk number sent

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence

    def next_chunk(self) -> int:
        self.chunk += 1
        return self.chunk

    @property
    def frame_bytes(self) -> int:
        return self.rate * self.frame_ms // 1000 * 2

    def opening(self, parameters: Mapping[str, str]) -> list[Frame]:
        raise NotImplementedError

    def media(self, pcm16: bytes, timestamp_ms: int) -> Frame:
        raise NotImplementedError

    def dtmf(self, digit: str) -> Frame:
        raise NotImplementedError

    def mark_played(self, name: str) -> Frame:
        raise NotImplementedError

    def cleared(self) -> list[Frame]:
        """Frames acknowledging a clear (besides echoed marks); none by default."""
        return []

    def stop(self) -> Frame | None:
        """The end-of-stream frame; ``None``: the socket's close is the end (Plivo, Vonage)."""
        raise NotImplementedError

    def error_event(self, rejected: CarrierRejected) -> Frame | None:
        """For carriers that report instead of closing (:attr:`closes_on_reject` False)."""
        return None

    def judge(self, raw: Frame) -> AppMessage:
        raise NotImplementedError


def to_rate(pcm16: bytes, source: int, target: int) -> bytes:
    """App audio declared at another rate, brought to the leg's (Plivo, Telnyx)."""
    return pcm16 if source == target else RatioResampler(source, target).push(pcm16)


# --------------------------------------------------------------------------- set-up result


@dataclass(slots=True)
class StreamPlan:
    """What the answer document (or REST command) told the carrier to open."""

    url: str  # as the bridge wrote it (wss://…)
    connect_url: str  # where the simulator really connects (loopback)
    headers: dict[str, str]
    wire: CarrierWire
    parameters: dict[str, str] = field(default_factory=dict)


class RestRequest(Protocol):
    """What a flavour records of a REST request the bridge made (:class:`~.rest.ApiRequest`)."""

    @property
    def action(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def body(self) -> dict[str, Any]: ...


class CarrierFlavour:
    """The carrier's HTTP side; subclasses fill in the three hooks."""

    carrier: ClassVar[str] = "?"
    webhook_path: ClassVar[str] = "/voice"

    async def set_up(self, call: CarrierCall) -> StreamPlan | None:
        """Signed webhook → answer; ``None`` when no stream is to be opened."""
        raise NotImplementedError

    async def stream_opened(self, call: CarrierCall) -> None:
        """After the upgrade (status callbacks that say the stream started)."""

    async def stream_ended(self, call: CarrierCall) -> None:
        """After the socket closed (status callbacks, action URL, event webhooks)."""

    def close(self) -> None:
        """Release what set-up registered (the fake REST API's call)."""


# --------------------------------------------------------------------------- the call (I/O)


class CarrierCall:
    """One simulated call through a carrier flavour over real HTTP and WebSocket."""

    def __init__(
        self,
        flavour: CarrierFlavour,
        *,
        routes: Routes,
        report: DialReport,
        rate: int,
        pcm16: bytes,
        fast: bool,
        gaps: Sequence[tuple[float, float]],
        dtmf: Sequence[tuple[float, str]],
        hangup_after: float | None,
        send_stop: bool,
        tail: float,
        max_call: float,
        timeout: float,
        webhook_auth: Auth = "valid",
        socket_auth: Auth = "valid",
    ) -> None:
        self.flavour = flavour
        self.routes = routes
        self.report = report
        self.rate = rate  # the caller's leg rate (a flavour may narrow it at set-up)
        self.pcm16 = pcm16
        self.fast = fast
        self.gaps = gaps
        self.dtmf = dtmf
        self.hangup_after = hangup_after
        self.send_stop = send_stop
        self.tail = tail
        self.max_call = max_call
        self.timeout = timeout
        self.webhook_auth = webhook_auth
        self.socket_auth = socket_auth
        self.heard = bytearray()
        self.wire: CarrierWire | None = None
        self.playback = PlaybackBuffer()
        self.send_lock = asyncio.Lock()
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.stream_t0: float | None = None
        self.played_bytes = 0
        self.http: httpx.AsyncClient | None = None
        self.remote_hangup = asyncio.Event()  # the bridge hung up over REST
        self.remote_hangup_reason = ""

    # ---------------------------------------------------------------- bookkeeping

    def now(self) -> float:
        return round(self.loop.time() - self.t0, 4)

    def error(self, code: int, message: str) -> None:
        self.report.protocol_errors.append(ProtocolErrorRecord(code, message, self.now()))

    def ended(self, by: str) -> None:
        if not self.report.ended_by:
            self.report.ended_by = by
            self.report.ended_at_s = self.now()

    def hang_up_remotely(self, reason: str) -> None:
        """The bridge ended the call through the carrier's REST API."""
        if not self.remote_hangup.is_set():
            self.remote_hangup_reason = reason
            self.remote_hangup.set()

    @property
    def call_over(self) -> bool:
        """The call itself ended (the caller hung up, or the bridge hung up over REST)."""
        by = self.report.ended_by
        return by in ("caller", "caller_dropped") or (
            by == "rest_hangup" and self.remote_hangup_reason == "hangup"
        )

    def record_rest(self, request: RestRequest) -> None:
        """A REST request the bridge made on this call, for the report."""
        self.report.rest_requests.append(
            {"action": request.action, "body": request.body, "path": request.path}
        )

    async def webhook(
        self,
        method: str,
        url: str,
        *,
        ok: range = range(200, 201),
        document: bool = True,
        **kwargs: Any,
    ) -> httpx.Response | None:
        """The call webhook that sets the call up (answer URL, applet endpoint).

        Records its status (and, with ``document``, its answer: Telnyx's is
        the REST commands instead); a failed request or a status outside
        ``ok`` ends the call as ``webhook_failed`` (``None``).
        """
        assert self.http is not None
        try:
            response = await self.http.request(method, self.routes.http(url), **kwargs)
        except httpx.HTTPError as exc:
            self.error(NO_CODE, f"{method} {url} failed: {exc!r}")
            self.ended("webhook_failed")
            return None
        self.report.webhook_status = response.status_code
        if document:
            self.report.answer_document = response.text
        if response.status_code not in ok:
            self.ended("webhook_failed")
            return None
        return response

    def public(self, path: str) -> str:
        return self.routes.public_base.rstrip("/") + path

    async def callback(
        self, kind: str, method: str, url: str, **kwargs: object
    ) -> httpx.Response | None:
        """One HTTP request the carrier makes after set-up, recorded in ``callbacks``."""
        assert self.http is not None
        record: dict[str, object] = {"kind": kind, "method": method, "url": url}
        try:
            response = await self.http.request(method, self.routes.http(url), **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            record["error"] = repr(exc)
            self.report.callbacks.append(record)
            return None
        record["status"] = response.status_code
        record["answer"] = response.text[:2000]
        self.report.callbacks.append(record)
        return response

    # ---------------------------------------------------------------- run

    async def run(self) -> DialReport:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                self.http = http
                plan = await self.flavour.set_up(self)
                if plan is not None:
                    await self.stream(plan)
                    await self.flavour.stream_ended(self)
        finally:
            self.flavour.close()
        rate = self.report.sample_rate
        self.report.heard_seconds = len(self.heard) / (2 * rate)
        self.report.agent_audio_seconds = self.report.bytes_received / (2 * rate)
        return self.report

    async def stream(self, plan: StreamPlan) -> None:
        self.wire = plan.wire
        if plan.wire.rate != self.rate:  # the carrier narrowed the leg (Telnyx PCMU)
            self.pcm16 = to_rate(self.pcm16, self.rate, plan.wire.rate)
        self.rate = plan.wire.rate
        self.report.sample_rate = plan.wire.rate
        self.report.stream_url = plan.url
        self.report.connected_url = plan.connect_url
        self.report.custom_parameters = dict(plan.parameters)
        self.playback = PlaybackBuffer(
            max_buffered_bytes=plan.wire.max_buffered_ms * self.rate * 2 // 1000,
            silence=b"\x00\x00",
        )
        try:
            socket = await connect(
                plan.connect_url,
                additional_headers=plan.headers,
                open_timeout=self.timeout,
                close_timeout=self.timeout,
                ping_interval=None,
                compression=None,
            )
        except InvalidStatus as exc:
            self.report.upgrade_status = exc.response.status_code
            self.error(NO_CODE, f"upgrade answered HTTP {exc.response.status_code}")
            self.ended("stream_failed")
            return
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            self.error(NO_CODE, f"cannot open {plan.connect_url}: {exc!r}")
            self.ended("stream_failed")
            return
        self.report.upgrade_status = 101
        async with socket:
            await self.flavour.stream_opened(self)
            await self.converse(socket, plan)
        self.report.close_code = socket.close_code
        self.report.close_reason = socket.close_reason or ""

    async def send(self, socket: ClientConnection, frame: Frame) -> None:
        async with self.send_lock:
            await socket.send(frame)

    async def converse(self, socket: ClientConnection, plan: StreamPlan) -> None:
        for frame in plan.wire.opening(plan.parameters):
            await self.send(socket, frame)
        self.stream_t0 = self.loop.time()
        speaker = asyncio.create_task(self.speak(socket))
        listener = asyncio.create_task(self.listen(socket))
        player = asyncio.create_task(self.play(socket))
        hangup = asyncio.create_task(self.remote_hangup.wait())
        try:
            await asyncio.wait({speaker, listener, hangup}, return_when=asyncio.FIRST_COMPLETED)
            if listener.done() or hangup.done():
                speaker.cancel()
            if hangup.done() and not listener.done():
                # The carrier ends the stream of a call hung up over REST its own way.
                self.ended("rest_hangup")
                await self.end_stream(socket)
            await socket.close()
            await asyncio.wait({listener}, timeout=self.timeout)
        finally:
            for task in (speaker, listener, player, hangup):
                task.cancel()
            results = await asyncio.gather(
                speaker, listener, player, hangup, return_exceptions=True
            )
            self.advance_playback()
            self.report.stream_duration_s = round(self.loop.time() - self.stream_t0, 4)
            self.report.notes.extend(plan.wire.notes)
        for result in results:
            if isinstance(result, Exception) and not isinstance(
                result, ConnectionClosed | asyncio.CancelledError
            ):
                raise result

    async def end_stream(self, socket: ClientConnection) -> None:
        assert self.wire is not None
        stop = self.wire.stop()
        if stop is not None:
            with contextlib.suppress(ConnectionClosed):
                await self.send(socket, stop)

    async def speak(self, socket: ClientConnection) -> None:
        """The caller's line: media at the carrier's frame length, gaps, DTMF, hang-up."""
        assert self.stream_t0 is not None
        assert self.wire is not None
        wire = self.wire
        size = wire.frame_bytes
        frames = [
            self.pcm16[i : i + size].ljust(size, b"\x00") for i in range(0, len(self.pcm16), size)
        ]
        seconds = wire.frame_ms / 1000
        end = hangup_time(len(frames), self.hangup_after, self.tail, self.max_call, seconds)
        timeline = caller_timeline(
            frames,
            end=end,
            gaps=self.gaps,
            dtmf=self.dtmf,
            silence=b"\x00" * size,
            frame_seconds=seconds,
        )
        for action in timeline:
            if self.fast:
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(max(0.0, self.stream_t0 + action.at - self.loop.time()))
            match action:
                case SendMedia(payload=payload, timestamp_ms=timestamp_ms):
                    await self.send(socket, wire.media(payload, timestamp_ms))
                    self.report.frames_sent += 1
                    self.report.bytes_sent += len(payload)
                case SendDtmf(digit=digit):
                    await self.send(socket, wire.dtmf(digit))
                    self.report.dtmf_sent.append(digit)
                case HangUp():
                    if self.send_stop:
                        self.ended("caller")
                        await self.end_stream(socket)
                    else:
                        self.ended("caller_dropped")
                    return

    async def listen(self, socket: ClientConnection) -> None:
        """What the bridge sends, judged as the carrier judges it."""
        assert self.wire is not None
        wire = self.wire
        try:
            async for raw in socket:
                try:
                    message = wire.judge(raw)
                except CarrierRejected as exc:
                    self.error(exc.code, str(exc))
                    if wire.closes_on_reject:
                        self.ended("protocol_error")
                        await socket.close(PROTOCOL_ERROR_CLOSE, f"{wire.carrier}: rejected")
                        return
                    event = wire.error_event(exc)
                    if event is not None:
                        await self.send(socket, event)
                    continue
                await self.handle(socket, message)
        except ConnectionClosed as exc:
            if exc.rcvd is None and exc.sent is None:
                self.error(NO_CODE, f"socket dropped: {exc!r}")
        finally:
            self.ended("bridge")

    async def handle(self, socket: ClientConnection, message: AppMessage) -> None:
        assert self.wire is not None
        match message:
            case AppAudio(pcm16=pcm16):
                if self.report.first_agent_audio_after_start_s is None:
                    assert self.stream_t0 is not None
                    elapsed = self.loop.time() - self.stream_t0
                    self.report.first_agent_audio_after_start_s = round(elapsed, 4)
                self.report.frames_received += 1
                self.report.bytes_received += len(pcm16)
                self.advance_playback()
                if not self.playback.enqueue_audio(pcm16):
                    self.error(NO_CODE, f"{self.wire.carrier} playback buffer full: audio dropped")
            case AppMark(name=name):
                self.report.marks_received.append(name)
                self.advance_playback()
                await self.echo(socket, self.playback.enqueue_mark(name))
            case AppClear():
                self.report.clears_received += 1
                self.advance_playback()
                pending = self.playback.clear()
                if self.wire.echoes_marks_on_clear:
                    await self.echo(socket, pending)
                for frame in self.wire.cleared():
                    await self.send(socket, frame)
            case AppDtmf(digits=digits):
                self.report.notes.append(f"app played DTMF {digits!r}")
            case AppIgnored(reason=reason):
                self.report.notes.append(reason)

    async def echo(self, socket: ClientConnection, marks: list[str]) -> None:
        assert self.wire is not None
        for name in marks:
            self.report.marks_echoed.append(name)
            await self.send(socket, self.wire.mark_played(name))

    async def play(self, socket: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(PLAYBACK_TICK_SECONDS)
                await self.echo(socket, self.advance_playback())

    def advance_playback(self) -> list[str]:
        assert self.stream_t0 is not None
        target = int((self.loop.time() - self.stream_t0) * self.rate) * 2
        heard, marks = self.playback.play(max(0, target - self.played_bytes))
        self.played_bytes += len(heard)
        self.heard += heard
        return marks
