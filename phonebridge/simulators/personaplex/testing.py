"""Drive a model session against the simulator: helpers for tests and demos (TEST SUPPORT)."""

from __future__ import annotations

import asyncio
import math
import struct
from dataclasses import dataclass, field

from phonebridge.models.base import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    AgentAudio,
    AgentText,
    ModelEvent,
    ModelSession,
    SessionEnded,
    SessionRequest,
)

REQUEST = SessionRequest(prompt="You are a helpful receptionist.", voice="NATF2")
SILENCE = bytes(FRAME_SAMPLES * 2)  # one 20 ms frame at the session's (the line's) rate
GUARD = 10.0  # seconds: only there to turn a hang into a failure, never a timing assertion


def tone(index: int, amplitude: int = 8000) -> bytes:
    """20 ms of a 440 Hz tone, phase-continuous across frame indices."""
    start = index * FRAME_SAMPLES
    return b"".join(
        struct.pack("<h", int(amplitude * math.sin(2 * math.pi * 440 * (start + n) / SAMPLE_RATE)))
        for n in range(FRAME_SAMPLES)
    )


@dataclass
class Collected:
    events: list[ModelEvent] = field(default_factory=list)

    @property
    def audio(self) -> bytes:
        return b"".join(e.pcm for e in self.events if isinstance(e, AgentAudio))

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, AgentText)]

    @property
    def ends(self) -> list[SessionEnded]:
        return [e for e in self.events if isinstance(e, SessionEnded)]


async def collect(session: ModelSession, sink: Collected) -> None:
    async for event in session.events():
        sink.events.append(event)


async def converse(
    session: ModelSession, frames: int, *, speech_frames: int = 0, close: bool = True
) -> Collected:
    """Open, send ``frames`` 20 ms frames in real time (tone first), close; return events."""
    sink = Collected()
    async with asyncio.timeout(GUARD):
        await session.open()
        reader = asyncio.create_task(collect(session, sink))
        for i in range(frames):
            await session.send_audio(tone(i) if i < speech_frames else SILENCE)
            await asyncio.sleep(0.02)
        if close:
            await session.close()
        await reader
    return sink
