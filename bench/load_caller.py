"""Callers for the load benchmark: Twilio's side of many calls, as cheaply as possible.

The phone simulator (phonebridge.simulators.phone) checks every message the
bridge sends against Twilio's rules; that is what tests need, and too costly
for a hundred calls on one core. These callers do what Twilio does on the
wire — signed webhook, signed ``wss`` upgrade, ``connected``/``start``, one
``media`` message per 20 ms with string sequence numbers, marks echoed,
``stop`` — from pre-encoded payloads: a JSON template filled per frame.

Each caller sends digital silence with a 40 ms tone burst every second (the
model farm's probe connections time its arrival) and notes when agent audio
turns from silence to sound (the farm's reply bursts), when the first agent
frame arrived, and when it sent ``stop``. Times are ``loop.time()``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import secrets
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from phonebridge.audio.analysis import rms, samples
from phonebridge.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from phonebridge.simulators.phone.routes import Routes
from phonebridge.simulators.phone.twiml_reader import TwimlAnswer, read_twiml
from phonebridge.simulators.phone.wire import TwilioStreamWriter
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign
from phonebridge.telephony.vonage.signature import sign as vonage_sign

FRAME_SECONDS = 0.020
BURST_EVERY_FRAMES = 50  # one burst per second
BURST_FRAMES = 2
SOUND_RMS = 800


def rms_of(pcm: bytes) -> float:
    return rms(samples(pcm))


def _mulaw_frame(freq: float | None) -> str:
    if freq is None:
        pcm = bytes(320)
    else:
        wave = (int(0.4 * 32767 * math.sin(2 * math.pi * freq * n / 8000)) for n in range(160))
        pcm = struct.pack("<160h", *wave)
    return base64.b64encode(pcm16_to_ulaw(pcm)).decode("ascii")


SILENCE_B64 = _mulaw_frame(None)
BURST_B64 = _mulaw_frame(1000.0)
_MEDIA = (
    '{"event":"media","sequenceNumber":"%d","media":{"track":"inbound","chunk":"%d",'
    '"timestamp":"%d","payload":"%s"},"streamSid":"%s"}'
)
_MARK = '{"event":"mark","sequenceNumber":"%d","streamSid":"%s","mark":{"name":%s}}'
_STOP = (
    '{"event":"stop","sequenceNumber":"%d","streamSid":"%s",'
    '"stop":{"accountSid":"%s","callSid":"%s"}}'
)
ACCOUNT_SID = "AC" + "0" * 32


def _is_burst(frame: int) -> bool:
    """Whether ``frame`` is one of a burst's frames (the first period is quiet)."""
    return frame % BURST_EVERY_FRAMES < BURST_FRAMES and frame >= BURST_EVERY_FRAMES


@dataclass(slots=True)
class CallTrace:
    """What one caller saw."""

    index: int
    call_sid: str
    start_at: float | None = None
    stop_at: float | None = None
    first_media_at: float | None = None
    frames_sent: int = 0
    frames_received: int = 0
    send_late_max: float = 0.0  # how far the generator itself fell behind its schedule
    bursts_sent: list[float] = field(default_factory=list)
    bursts_heard: list[float] = field(default_factory=list)  # agent bursts
    error: str = ""


class Caller:
    """One call: webhook first (:meth:`dial`), then the stream (:meth:`talk`)."""

    def __init__(
        self,
        index: int,
        *,
        routes: Routes,
        auth_token: str,
        to: str,
        phase: float,
        stream_route: Callable[[str], str] | None = None,
    ) -> None:
        self.trace = CallTrace(index, "CA" + secrets.token_hex(16))
        self._routes = routes
        self._token = auth_token
        self._to = to
        self._from = f"+1416{index:07d}"
        self._phase = phase
        # Where to open a <Stream url>: as the TLS proxy would route it (by
        # worker path under `serve --workers`), else the routes' rebasing.
        self._stream_route = stream_route or routes.websocket
        self._answer: TwimlAnswer | None = None
        self._ws: ClientConnection | None = None
        self._stream_sid = "MZ" + secrets.token_hex(16)
        self._writer = TwilioStreamWriter(self._stream_sid, ACCOUNT_SID, self.trace.call_sid)
        self._sequence = 1  # 'start' is 1; every later message takes the next number
        self._hang_up = asyncio.Event()

    async def dial(self, http: httpx.AsyncClient) -> None:
        url = self._routes.public_base.rstrip("/") + "/twilio/voice"
        params = {
            "CallSid": self.trace.call_sid,
            "AccountSid": ACCOUNT_SID,
            "From": self._from,
            "To": self._to,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }
        response = await http.post(
            self._routes.http(url),
            data=params,
            headers={SIGNATURE_HEADER: sign(self._token, url, params)},
        )
        response.raise_for_status()
        self._answer = read_twiml(response.text, response.headers.get("content-type"))
        if not self._answer.connects_stream:
            raise RuntimeError(f"call {self.trace.index} was not connected: {response.text}")

    async def talk(self) -> None:
        """Open the stream and talk until :meth:`hang_up`."""
        assert self._answer is not None
        assert self._answer.stream_url is not None
        stream_url = self._answer.stream_url
        loop = asyncio.get_running_loop()
        try:
            async with connect(
                self._stream_route(stream_url),
                additional_headers={SIGNATURE_HEADER: sign(self._token, stream_url, {})},
                max_size=1 << 16,
                ping_interval=None,
            ) as ws:
                self._ws = ws
                await ws.send(self._writer.connected())
                await ws.send(self._writer.start(self._answer.parameters))
                self.trace.start_at = loop.time()
                receiver = asyncio.create_task(self._receive(ws, loop))
                try:
                    await self._send_media(ws, loop)
                finally:
                    receiver.cancel()
                    await asyncio.gather(receiver, return_exceptions=True)
        except (OSError, ConnectionClosed) as exc:
            self.trace.error = repr(exc)

    def hang_up(self) -> None:
        self._hang_up.set()

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    async def _paced_frames(self, loop: asyncio.AbstractEventLoop) -> AsyncIterator[int]:
        """This caller's 20 ms frames, each when it is due, until hang-up: the
        frame's number, its burst (if any) noted in the trace. Each caller's grid
        has its own phase, as independent calls do."""
        origin = loop.time() + self._phase
        frame = 0
        while not self._hang_up.is_set():
            due = origin + frame * FRAME_SECONDS
            delay = due - loop.time()
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await self._hang_up.wait()
                    break
                except TimeoutError:
                    pass
            now = loop.time()
            self.trace.send_late_max = max(self.trace.send_late_max, now - due)
            if _is_burst(frame) and frame % BURST_EVERY_FRAMES == 0:
                self.trace.bursts_sent.append(now)
            yield frame
            frame += 1
            self.trace.frames_sent += 1
        self.trace.stop_at = loop.time()

    async def _send_media(self, ws: ClientConnection, loop: asyncio.AbstractEventLoop) -> None:
        async for frame in self._paced_frames(loop):
            message = _MEDIA % (
                self._next_sequence(),
                frame + 1,
                frame * 20,
                BURST_B64 if _is_burst(frame) else SILENCE_B64,
                self._stream_sid,
            )
            await ws.send(message)
        await ws.send(
            _STOP % (self._next_sequence(), self._stream_sid, ACCOUNT_SID, self.trace.call_sid)
        )

    async def _receive(self, ws: ClientConnection, loop: asyncio.AbstractEventLoop) -> None:
        loud = False
        async for raw in ws:
            now = loop.time()
            message = json.loads(raw)
            event = message.get("event")
            if event == "media":
                self.trace.frames_received += 1
                if self.trace.first_media_at is None:
                    self.trace.first_media_at = now
                pcm = ulaw_to_pcm16(base64.b64decode(message["media"]["payload"]))
                is_loud = rms_of(pcm) >= SOUND_RMS
                if is_loud and not loud:
                    self.trace.bursts_heard.append(now)
                loud = is_loud
            elif event == "mark":
                # Twilio echoes a mark when playback reaches it; the load caller
                # plays nothing, so it echoes at once.
                name = json.dumps(message["mark"]["name"])
                await ws.send(_MARK % (self._next_sequence(), self._stream_sid, name))


# --------------------------------------------------------------------------- Vonage 16 kHz

VONAGE_SECRET = "bench-vonage-signature-secret-0123456789"
VONAGE_API_KEY = "bench0001"
VONAGE_RATE = 16_000


def _l16_frame(freq: float | None) -> bytes:
    if freq is None:
        return bytes(640)
    wave = (int(0.4 * 32767 * math.sin(2 * math.pi * freq * n / VONAGE_RATE)) for n in range(320))
    return struct.pack("<320h", *wave)


L16_SILENCE = _l16_frame(None)
L16_BURST = _l16_frame(1000.0)


class VonageCaller(Caller):
    """Vonage's side of one wideband call (CARRIERS.md §3): signed GET answer_url, NCCO,
    JWT-authenticated upgrade, ``websocket:connected`` then one binary 640 B (20 ms at
    16 kHz) frame per 20 ms; agent audio arrives as binary frames; a ``notify`` is
    answered at once (nothing is played); the call ends when the socket closes."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.trace.call_sid = secrets.token_hex(16)  # Vonage's uuid
        self._endpoint: dict[str, object] = {}

    def _jwt(self) -> dict[str, str]:
        token = vonage_sign(
            VONAGE_SECRET, time.time(), api_key=VONAGE_API_KEY, jti=secrets.token_hex(8)
        )
        return {"Authorization": f"Bearer {token}"}

    async def dial(self, http: httpx.AsyncClient) -> None:
        query = {
            "to": self._to.lstrip("+"),
            "from": self._from.lstrip("+"),
            "uuid": self.trace.call_sid,
        }
        url = self._routes.public_base.rstrip("/") + "/vonage/answer?" + urlencode(query)
        response = await http.get(self._routes.http(url), headers=self._jwt())
        response.raise_for_status()
        ncco = response.json()
        endpoint = ncco[0]["endpoint"][0] if ncco and ncco[0].get("action") == "connect" else None
        if endpoint is None:
            raise RuntimeError(f"call {self.trace.index} was not connected: {response.text}")
        self._endpoint = endpoint

    async def talk(self) -> None:
        loop = asyncio.get_running_loop()
        uri = str(self._endpoint["uri"])
        headers = self._endpoint.get("headers")
        connected = {
            "event": "websocket:connected",
            "content-type": self._endpoint["content-type"],
            **(headers if isinstance(headers, dict) else {}),
        }
        try:
            async with connect(
                self._stream_route(uri),
                additional_headers=self._jwt(),
                max_size=1 << 16,
                ping_interval=None,
            ) as ws:
                await ws.send(json.dumps(connected))
                self.trace.start_at = loop.time()
                receiver = asyncio.create_task(self._receive_vonage(ws, loop))
                try:
                    await self._send_l16(ws, loop)
                finally:
                    receiver.cancel()
                    await asyncio.gather(receiver, return_exceptions=True)
        except (OSError, ConnectionClosed) as exc:
            self.trace.error = repr(exc)

    async def _send_l16(self, ws: ClientConnection, loop: asyncio.AbstractEventLoop) -> None:
        # The socket then closes: Vonage's end of call.
        async for frame in self._paced_frames(loop):
            await ws.send(L16_BURST if _is_burst(frame) else L16_SILENCE)

    async def _receive_vonage(self, ws: ClientConnection, loop: asyncio.AbstractEventLoop) -> None:
        loud = False
        async for raw in ws:
            now = loop.time()
            if isinstance(raw, bytes):
                self.trace.frames_received += 1
                if self.trace.first_media_at is None:
                    self.trace.first_media_at = now
                is_loud = rms_of(raw) >= SOUND_RMS
                if is_loud and not loud:
                    self.trace.bursts_heard.append(now)
                loud = is_loud
                continue
            message = json.loads(raw)
            if message.get("action") == "notify":
                await ws.send(
                    json.dumps({"event": "websocket:notify", "payload": message["payload"]})
                )
