"""One simulated self-hosted / PolarGrid session, behaving like PROTOCOLS.md §2-§3. TEST DOUBLE.

Reproduced on purpose, each a way a real call fails:

- §2.1 query checks: ``seed``, a missing ``text_prompt`` or an unknown voice
  crash the handler at once (close 1006, no close frame); an empty prompt
  crashes it after conditioning. (PolarGrid: voice without ``.pt``.)
- §2.3 conditioning: ``conditioning_delay`` seconds during which everything
  the client sends is read and thrown away; then ``0x00``, then the server's
  two header pages.
- §2.3 step 4: the first page must be a BOS page with OpusHead; a page with a
  bad CRC or a second BOS page kills the session (close 1000 ~20 ms later).
- §2.3 step 5: one output page (one 1920-sample packet) per 1920 input samples
  decoded, text pieces after the page; no input, no output.
- §3: ``0x03`` control words (``eos`` starts a speech reply) and ``0x02`` text.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Final

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from phonebridge.audio.ogg import OggOpusReader, OggPageReader
from phonebridge.audio.opus import OpusDecoder
from phonebridge.errors import AudioError
from phonebridge.models.base import VOICES
from phonebridge.simulators.personaplex.records import ConnectionRecord
from phonebridge.simulators.personaplex.replies import Replier, ReplyMode
from phonebridge.simulators.personaplex.server_ogg import STEP_BYTES, ServerOggWriter

HANDSHAKE: Final[int] = 0x00
AUDIO: Final[int] = 0x01
TEXT: Final[int] = 0x02
CONTROL: Final[int] = 0x03
DEATH_DELAY: Final[float] = 0.02  # the real server closes ~20 ms after a fatal stream error


@dataclass(frozen=True, slots=True)
class Faults:
    """Failure knobs for tests of the client's error paths."""

    never_handshake: bool = False  # condition forever (a hung or overloaded server)
    close_during_conditioning: bool = False  # crash (1006) halfway through conditioning
    die_after: float | None = None  # crash (1006) this many seconds after the handshake
    stall_after: float | None = None  # stop producing output this long after the handshake
    fal_timeout_after: float | None = None  # fal only: x-fal-error TIMEOUT, then close, this
    # long after the socket opened (0: at connect, before any reply)


def abort(ws: ServerConnection, record: ConnectionRecord, why: str) -> None:
    """Drop the TCP connection without a close frame: the client sees 1006, as when
    the real server's handler raises."""
    record.end = record.end or why
    record.close_code = 1006
    ws.transport.abort()


async def die(ws: ServerConnection, record: ConnectionRecord, why: str) -> None:
    """A session task died: the real server closes normally ~20 ms later."""
    record.end = record.end or why
    record.close_code = 1000
    await asyncio.sleep(DEATH_DELAY)
    await ws.close(1000)


def query_problem(record: ConnectionRecord, polargrid: bool) -> str | None:
    """What the real server would crash on in the query string, if anything."""
    query = record.query
    if polargrid:
        voice = query.get("voice", [""])[0]
        if voice not in VOICES:
            return f"unknown voice {voice!r}"
        if not query.get("persona", [""])[0]:
            return "missing persona"
        return None
    if "seed" in query:
        return "seed in the query (crashes the handler)"
    if "text_prompt" not in query:
        return "missing text_prompt"
    voice = query.get("voice_prompt", [""])[0]
    if not voice.endswith(".pt") or voice[:-3] not in VOICES:
        return f"unknown voice_prompt {voice!r}"
    return None


class OggSession:
    """The part of a session after the one-session lock was taken."""

    def __init__(
        self,
        ws: ServerConnection,
        record: ConnectionRecord,
        *,
        reply: ReplyMode,
        conditioning_delay: float,
        faults: Faults,
        polargrid: bool,
    ) -> None:
        self.ws = ws
        self.record = record
        self.conditioning_delay = conditioning_delay
        self.faults = faults
        self.polargrid = polargrid
        self.replier = Replier(reply)
        self.writer = ServerOggWriter()
        self.pages = OggPageReader()  # for the BOS and CRC checks
        self.packets = OggOpusReader()  # for the audio
        self.decoder = OpusDecoder(24000)
        self.pcm = bytearray()
        self.loop = asyncio.get_running_loop()

    async def run(self) -> None:
        if not await self._condition():
            return
        empty_prompt = not self.polargrid and not self.record.query["text_prompt"][0]
        if empty_prompt:
            abort(self.ws, self.record, "empty text_prompt (crashes the session)")
            return
        await self.ws.send(bytes([HANDSHAKE]))
        self.record.handshake_at = self.loop.time()
        await self.ws.send(bytes([AUDIO]) + self.writer.headers())
        killer = None
        if self.faults.die_after is not None:
            killer = self.loop.call_later(
                self.faults.die_after, abort, self.ws, self.record, "die_after fault"
            )
        try:
            async for message in self.ws:
                if isinstance(message, str):
                    continue  # the server ignores text frames (§2.2)
                if not await self._on_message(message):
                    return
        finally:
            if killer is not None:
                killer.cancel()

    async def _condition(self) -> bool:
        """Read and discard input for the conditioning delay; False if the session ended."""
        delay = self.conditioning_delay
        crash_at = delay / 2 if self.faults.close_during_conditioning else None
        deadline = self.loop.time() + (crash_at if crash_at is not None else delay)
        while self.faults.never_handshake or self.loop.time() < deadline:
            timeout = None if self.faults.never_handshake else deadline - self.loop.time()
            try:
                async with asyncio.timeout(timeout):
                    await self.ws.recv()
            except TimeoutError:
                break
            self.record.pre_handshake_messages += 1
        if crash_at is not None:
            abort(self.ws, self.record, "close_during_conditioning fault")
            return False
        return True

    async def _on_message(self, message: bytes) -> bool:
        if not message:
            return True
        kind, payload = message[0], message[1:]
        if kind == AUDIO:
            self.record.note_input(self.loop.time())
            return await self._on_audio(payload)
        if self.polargrid and kind == CONTROL:
            word = payload.decode("utf-8", errors="replace")
            self.record.controls.append(word)
            if word == "eos":
                self.replier.end_of_turn()
        elif self.polargrid and kind == TEXT:
            self.record.injected_text.append(payload.decode("utf-8", errors="replace"))
        return True  # other kinds are ignored, like the real server does

    async def _on_audio(self, payload: bytes) -> bool:
        try:
            pages = self.pages.push(payload)
        except AudioError:
            await die(self.ws, self.record, "bad Ogg page (CRC)")
            return False
        for page in pages:
            if page.bos:
                self.record.bos_pages += 1
                if self.record.bos_pages > 1:
                    await die(self.ws, self.record, "second BOS page (encoder restarted)")
                    return False
            elif self.record.bos_pages == 0:
                await die(self.ws, self.record, "audio before the BOS page")
                return False
        try:
            for packet in self.packets.push(payload):
                self.pcm += self.decoder.decode(packet)
        except AudioError:
            await die(self.ws, self.record, "undecodable Opus")
            return False
        while len(self.pcm) >= STEP_BYTES:
            step = bytes(self.pcm[:STEP_BYTES])
            del self.pcm[:STEP_BYTES]
            await self._step(step)
        return True

    async def _step(self, caller_pcm: bytes) -> None:
        """One model step: exactly one output page, then its text pieces (§2.4)."""
        self.record.input_samples += len(caller_pcm) // 2
        if len(self.record.input_pcm) < self.record.keep_input_bytes:
            self.record.input_pcm += caller_pcm
        agent_pcm, texts = self.replier.step(caller_pcm)
        stall = self.faults.stall_after
        handshake_at = self.record.handshake_at or 0.0
        if stall is not None and self.loop.time() - handshake_at >= stall:
            return
        await self.ws.send(bytes([AUDIO]) + self.writer.step(agent_pcm))
        self.record.frames_out += 1
        for text in texts:
            await self.ws.send(bytes([TEXT]) + text.encode("utf-8"))
            self.record.text_out.append(text)


async def run_ogg_session(
    ws: ServerConnection,
    record: ConnectionRecord,
    *,
    reply: ReplyMode,
    conditioning_delay: float,
    faults: Faults,
    polargrid: bool,
    lock: asyncio.Lock | None,
) -> None:
    """Validate the query, wait for the server (§2.5), then run the session."""
    problem = query_problem(record, polargrid)
    if problem is not None:
        if polargrid:
            record.end, record.close_code = problem, 1008
            await ws.close(1008, problem)
        else:
            abort(ws, record, problem)
        return
    if lock is None:
        await _session(
            ws,
            record=record,
            reply=reply,
            conditioning_delay=conditioning_delay,
            faults=faults,
            polargrid=polargrid,
        )
        return
    if lock.locked():
        record.waited_behind_busy = True  # upgraded, then silence until the lock frees
    if not await _acquire_unless_closed(lock, ws):
        record.end = record.end or "client left while waiting for the busy server"
        return
    try:
        await _session(
            ws,
            record=record,
            reply=reply,
            conditioning_delay=conditioning_delay,
            faults=faults,
            polargrid=polargrid,
        )
    finally:
        lock.release()


async def _session(
    ws: ServerConnection,
    *,
    record: ConnectionRecord,
    reply: ReplyMode,
    conditioning_delay: float,
    faults: Faults,
    polargrid: bool,
) -> None:
    record.session_started_at = asyncio.get_running_loop().time()
    session = OggSession(
        ws,
        record,
        reply=reply,
        conditioning_delay=conditioning_delay,
        faults=faults,
        polargrid=polargrid,
    )
    with contextlib.suppress(ConnectionClosed):
        await session.run()
    record.end = record.end or "client closed"


async def _acquire_unless_closed(lock: asyncio.Lock, ws: ServerConnection) -> bool:
    """Take the lock, unless the waiting client gives up first."""
    acquire = asyncio.ensure_future(lock.acquire())
    closed = asyncio.ensure_future(ws.wait_closed())
    try:
        await asyncio.wait({acquire, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closed.cancel()
        if not acquire.done():
            acquire.cancel()
    if acquire.done() and not acquire.cancelled():
        if ws.state.name == "OPEN":
            return True
        lock.release()
    return False
