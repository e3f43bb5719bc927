"""One simulated fal realtime session (PROTOCOLS.md §4). TEST DOUBLE.

No handshake byte: the model listens once the socket is open. Each binary
frame is a msgpack map with raw PCM s16le 24 kHz in ``audio`` and the full
configuration (messages missing part of it are counted, since a field left
out reverts to its default). One reply ``{audio, text}`` per 1920 input
samples; JSON text frames from the client are ignored. When no input arrives
for ``idle_timeout`` seconds the server sends ``x-fal-error`` ``TIMEOUT`` and
closes, like fal's runtime; the ``fal_timeout_after`` fault does the same at a
fixed time after the socket opened, whatever the input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, Final

import msgpack
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from phonebridge.simulators.personaplex.ogg_session import Faults, abort
from phonebridge.simulators.personaplex.records import ConnectionRecord
from phonebridge.simulators.personaplex.replies import Replier, ReplyMode
from phonebridge.simulators.personaplex.server_ogg import STEP_BYTES

CONFIG_FIELDS: Final[frozenset[str]] = frozenset(
    {"prompt", "voice", "temperature_audio", "temperature_text", "top_k_audio", "top_k_text"}
)


def _error(kind: str, reason: str) -> str:
    return json.dumps({"type": "x-fal-error", "error": kind, "reason": reason})


class FalSession:
    def __init__(
        self,
        ws: ServerConnection,
        record: ConnectionRecord,
        *,
        reply: ReplyMode,
        idle_timeout: float,
        faults: Faults,
    ) -> None:
        self.ws = ws
        self.record = record
        self.replier = Replier(reply)
        self.idle_timeout = idle_timeout
        self.faults = faults
        self.pcm = bytearray()
        self.loop = asyncio.get_running_loop()
        self.timings_sent = False

    async def run(self) -> None:
        self.record.session_started_at = self.record.handshake_at = self.loop.time()
        killer = None
        if self.faults.die_after is not None:
            killer = self.loop.call_later(
                self.faults.die_after, abort, self.ws, self.record, "die_after fault"
            )
        after = self.faults.fal_timeout_after
        timeout_at = None if after is None else self.loop.time() + after
        try:
            while True:
                wait = self.idle_timeout
                if timeout_at is not None:
                    if self.loop.time() >= timeout_at:
                        await self._time_out("fal_timeout_after fault", "fault TIMEOUT")
                        return
                    wait = min(wait, timeout_at - self.loop.time())
                try:
                    async with asyncio.timeout(wait):
                        message = await self.ws.recv()
                except TimeoutError:
                    if timeout_at is not None and self.loop.time() >= timeout_at:
                        continue  # the fault's time, not an idle client
                    await self._time_out(f"no input for {self.idle_timeout:g} s", "idle TIMEOUT")
                    return
                if isinstance(message, bytes):
                    await self._on_message(message)
        finally:
            if killer is not None:
                killer.cancel()

    async def _time_out(self, reason: str, end: str) -> None:
        """fal's runtime gives up: ``x-fal-error`` ``TIMEOUT``, then a normal close."""
        await self.ws.send(_error("TIMEOUT", reason))
        self.record.end, self.record.close_code = end, 1000
        await self.ws.close(1000)

    async def _on_message(self, message: bytes) -> None:
        try:
            fields: Any = msgpack.unpackb(message, raw=False)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            await self.ws.send(_error("INTERNAL_ERROR", "invalid msgpack"))
            self.record.end, self.record.close_code = "invalid msgpack", 1011
            await self.ws.close(1011)
            return
        if not isinstance(fields, dict):
            return
        self.record.note_input(self.loop.time())
        config = {k: v for k, v in fields.items() if k != "audio"}
        if not config.keys() >= CONFIG_FIELDS:
            self.record.fal_configs_incomplete += 1
        self.record.fal_last_config = config
        audio = fields.get("audio")
        if isinstance(audio, bytes):
            self.pcm += audio
        while len(self.pcm) >= STEP_BYTES:
            step = bytes(self.pcm[:STEP_BYTES])
            del self.pcm[:STEP_BYTES]
            await self._step(step)

    async def _step(self, caller_pcm: bytes) -> None:
        self.record.input_samples += len(caller_pcm) // 2
        if len(self.record.input_pcm) < self.record.keep_input_bytes:
            self.record.input_pcm += caller_pcm
        agent_pcm, texts = self.replier.step(caller_pcm)
        stall = self.faults.stall_after
        if stall is not None and self.loop.time() - (self.record.handshake_at or 0.0) >= stall:
            return
        text = "".join(texts)
        await self.ws.send(msgpack.packb({"audio": agent_pcm, "text": text}, use_bin_type=True))
        self.record.frames_out += 1
        if text:
            self.record.text_out.append(text)
        if not self.timings_sent:
            # fal interleaves informational messages; clients must skip them.
            self.timings_sent = True
            await self.ws.send(json.dumps({"type": "x-fal-message", "action": "timings"}))


async def run_fal_session(
    ws: ServerConnection,
    record: ConnectionRecord,
    *,
    reply: ReplyMode,
    idle_timeout: float,
    faults: Faults,
) -> None:
    session = FalSession(ws, record, reply=reply, idle_timeout=idle_timeout, faults=faults)
    with contextlib.suppress(ConnectionClosed):
        await session.run()
    record.end = record.end or "client closed"
