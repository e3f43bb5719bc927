"""Self-hosted PersonaPlex servers for the load benchmark — a TEST DOUBLE, cheap by design.

The project's simulator (phonebridge.simulators.personaplex) decodes every
input packet and encodes every reply, which is right for tests and far too
costly to run next to a hundred calls on the load generator's one core. This
farm speaks the same wire protocol (PROTOCOLS.md §2: ``/api/chat``, silence
while conditioning, ``0x00``, then ``0x01`` + Ogg pages shaped like sphn 0.1,
one 80 ms page per 80 ms of input consumed, nothing without input) but:

- replies with Opus packets encoded once at start-up (silence, and every
  ``burst_every_steps`` steps an 80 ms tone burst the phone side can detect);
- counts consumed input from the Ogg granule positions instead of decoding,
  except on every ``probe_every``-th connection, which decodes to time the
  caller's tone bursts arriving (the bridge's inbound transit): a burst counts
  as arrived when the 80 ms step holding its onset is whole, the moment the
  real server could first use it, however the client splits its pages.

Times are ``loop.time()`` (CLOCK_MONOTONIC), the same clock as the callers in
this process, so one side's send and the other side's receive compare directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import opuslib
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from phonebridge.audio.analysis import rms, samples
from phonebridge.audio.ogg import OggOpusReader, OggPageReader
from phonebridge.audio.opus import OpusDecoder
from phonebridge.simulators.personaplex.server_ogg import STEP_SAMPLES, ServerOggWriter

HANDSHAKE, AUDIO, TEXT = 0x00, 0x01, 0x02
STEP_48K = 3840  # one model step (80 ms) in the 48 kHz granule units our client writes
SOUND_RMS = 800  # well above codec noise on silence, well below the bursts


def rms_of(pcm: bytes) -> float:
    return rms(samples(pcm))


def _encode_step(encoder: opuslib.Encoder, pcm: bytes) -> bytes:
    packet: bytes = encoder.encode(pcm, STEP_SAMPLES)
    return packet


def _tone_step(freq: float = 700.0, level: float = 0.4) -> bytes:
    samples = [
        int(level * 32767 * math.sin(2 * math.pi * freq * n / 24000)) for n in range(STEP_SAMPLES)
    ]
    return struct.pack(f"<{STEP_SAMPLES}h", *samples)


class PrecodedWriter(ServerOggWriter):
    """sphn-0.1-shaped pages around packets encoded in advance."""

    def step_packet(self, packet: bytes) -> bytes:
        self._granule += STEP_SAMPLES
        return self._page(0, packet)


@dataclass(slots=True)
class ModelConnection:
    """One model session as this server saw it."""

    index: int
    opened_at: float
    probe: bool
    handshake_at: float | None = None
    first_input_at: float | None = None
    first_page_at: float | None = None
    closed_at: float | None = None
    input_messages: int = 0
    pages_out: int = 0
    bursts_sent: list[float] = field(default_factory=list)
    bursts_heard: list[float] = field(default_factory=list)  # caller bursts (probe only)


class LoadModelFarm:
    """``count`` one-session servers on loopback; ``connections`` in accept order."""

    def __init__(
        self,
        count: int,
        *,
        conditioning_delay: float = 0.2,
        burst_every_steps: int = 12,
        probe_every: int = 4,
    ) -> None:
        self._count = count
        self._conditioning = conditioning_delay
        self._burst_every = burst_every_steps
        self._probe_every = probe_every
        self.connections: list[ModelConnection] = []
        self.urls: list[str] = []
        self._servers: list[Server] = []
        self._changed = asyncio.Event()  # a connection opened or closed
        encoder = opuslib.Encoder(24000, 1, opuslib.APPLICATION_VOIP)
        silence = bytes(STEP_SAMPLES * 2)
        # Encode a little silence first so the burst packet is coded in context.
        for _ in range(3):
            _encode_step(encoder, silence)
        self._silence_packet = _encode_step(encoder, silence)
        self._burst_packet = _encode_step(encoder, _tone_step())

    async def __aenter__(self) -> LoadModelFarm:
        for _ in range(self._count):
            server = await serve(self._handle, "127.0.0.1", 0, max_size=1 << 16, ping_interval=None)
            self._servers.append(server)
            port = next(iter(server.sockets)).getsockname()[1]
            self.urls.append(f"ws://127.0.0.1:{port}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()

    async def wait_for_connections(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.connections) < count:
                self._changed.clear()
                await self._changed.wait()

    async def wait_all_closed(self) -> None:
        async with asyncio.timeout(30):
            while any(c.closed_at is None for c in self.connections):
                self._changed.clear()
                await self._changed.wait()

    async def _handle(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        index = len(self.connections)
        record = ModelConnection(
            index, loop.time(), probe=self._probe_every > 0 and index % self._probe_every == 0
        )
        self.connections.append(record)
        self._changed.set()
        try:
            if ws.request is None or not ws.request.path.startswith("/api/chat"):
                await ws.close(1008, "not /api/chat")
                return
            await self._session(ws, record, loop)
        except ConnectionClosed:
            pass
        finally:
            record.closed_at = loop.time()
            self._changed.set()

    async def _session(
        self, ws: ServerConnection, record: ModelConnection, loop: asyncio.AbstractEventLoop
    ) -> None:
        # Conditioning: input is read and thrown away until the handshake (§2.3).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._conditioning):
                async for _ in ws:
                    pass
        writer = PrecodedWriter()
        await ws.send(bytes([HANDSHAKE]))
        record.handshake_at = loop.time()
        await ws.send(bytes([AUDIO]) + writer.headers())
        pages = OggPageReader()
        packets = OggOpusReader() if record.probe else None
        decoder = OpusDecoder(24000) if record.probe else None
        heard_sound = False
        decoded = 0  # 24 kHz samples decoded so far (probe connections only)
        onset_step_ends: int | None = None
        steps = 0
        async for message in ws:
            if not isinstance(message, bytes) or not message or message[0] != AUDIO:
                continue
            now = loop.time()
            record.input_messages += 1
            if record.first_input_at is None:
                record.first_input_at = now
            payload = message[1:]
            consumed = 0
            for page in pages.push(payload):
                consumed = max(consumed, page.granule_position)
            if packets is not None and decoder is not None:
                for packet in packets.push(payload):
                    pcm = decoder.decode(packet)
                    loud = rms_of(pcm) >= SOUND_RMS
                    if loud and not heard_sound:
                        # The server can use the onset once the 80 ms step
                        # holding it is whole (§2.3 step 5), counted in decoded
                        # samples as sphn does, whatever the packet sizes.
                        onset_step_ends = (decoded // STEP_SAMPLES + 1) * STEP_SAMPLES
                    heard_sound = loud
                    decoded += len(pcm) // 2
                    if onset_step_ends is not None and decoded >= onset_step_ends:
                        record.bursts_heard.append(now)
                        onset_step_ends = None
            while steps < consumed // STEP_48K:
                steps += 1
                burst = steps % self._burst_every == 0
                reply = writer.step_packet(self._burst_packet if burst else self._silence_packet)
                await ws.send(bytes([AUDIO]) + reply)
                sent_at = loop.time()
                if record.first_page_at is None:
                    record.first_page_at = sent_at
                if burst:
                    record.bursts_sent.append(sent_at)
                    await ws.send(bytes([TEXT]) + b" hello")
                record.pages_out += 1


@contextlib.asynccontextmanager
async def model_farm(count: int, **options: int | float) -> AsyncIterator[LoadModelFarm]:
    farm = LoadModelFarm(count, **options)  # type: ignore[arg-type]
    async with farm:
        yield farm
