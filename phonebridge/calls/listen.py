"""Listening in on a live call: a bounded fan-out of both sides' audio.

Issue 13, "Listen in". An operator's page may hear a call in progress. The
call's own path must not notice: :class:`ListenHub` is fed synchronously by
the session (one truth test when nobody listens), each listener has its own
small queue, and a listener that falls behind loses audio (counted in
:attr:`Listener.dropped`) instead of making the call wait. The hub holds at
most ``max_listeners`` at once; when the call ends every listener is told so
and stops.

Sans-I/O apart from ``asyncio.Queue`` (which never blocks a ``put_nowait``):
no sockets, no clock.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from phonebridge.errors import CapacityError

DEFAULT_MAX_LISTENERS: Final = 4
# 50 chunks: a model page is 80 ms and a phone frame 20 ms, so one to four
# seconds of both sides; a listener that far behind hears gaps, the call none.
DEFAULT_QUEUE_CHUNKS: Final = 50


class Side(IntEnum):
    """Whose audio a chunk is (the first byte of a listen-in frame on the wire)."""

    CALLER = 0
    AGENT = 1


@dataclass(frozen=True, slots=True)
class Heard:
    """One chunk of the call's audio: mono s16le PCM at the call's rate."""

    side: Side
    pcm: bytes


class Listener:
    """One operator's view of the call's audio; read with :meth:`next`."""

    def __init__(self, who: str, queue_chunks: int) -> None:
        self.who = who
        self.dropped = 0  # chunks lost because this listener fell behind
        self._queue: asyncio.Queue[Heard | None] = asyncio.Queue(queue_chunks)
        self._ended = False

    def offer(self, heard: Heard) -> None:
        if self._ended:
            return
        try:
            self._queue.put_nowait(heard)
        except asyncio.QueueFull:
            self.dropped += 1  # never wait: the call is worth more than a listener

    def end(self) -> None:
        """No more audio: the call ended or the listener left."""
        if self._ended:
            return
        self._ended = True
        # What is still queued is stale now: the listener stops at once.
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def next(self) -> Heard | None:
        """The next chunk; ``None`` once the call has ended."""
        return await self._queue.get()


class ListenHub:
    """The listeners of one call."""

    def __init__(
        self,
        sample_rate: int,
        *,
        max_listeners: int = DEFAULT_MAX_LISTENERS,
        queue_chunks: int = DEFAULT_QUEUE_CHUNKS,
    ) -> None:
        self.sample_rate = sample_rate
        self._max = max_listeners
        self._queue_chunks = queue_chunks
        self._listeners: list[Listener] = []
        self._closed = False

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def __len__(self) -> int:
        return len(self._listeners)

    def join(self, who: str) -> Listener:
        """A new listener; raises :class:`CapacityError` when the call has enough of them."""
        if len(self._listeners) >= self._max:
            raise CapacityError(f"{self._max} listeners already on this call")
        listener = Listener(who, self._queue_chunks)
        if self._closed:
            listener.end()
        else:
            self._listeners.append(listener)
        return listener

    def leave(self, listener: Listener) -> None:
        listener.end()
        if listener in self._listeners:
            self._listeners.remove(listener)

    def caller(self, pcm: bytes) -> None:
        self._fan_out(Heard(Side.CALLER, pcm))

    def agent(self, pcm: bytes) -> None:
        self._fan_out(Heard(Side.AGENT, pcm))

    def _fan_out(self, heard: Heard) -> None:
        for listener in self._listeners:
            listener.offer(heard)

    def close(self) -> None:
        """The call ended: every listener stops."""
        self._closed = True
        for listener in self._listeners:
            listener.end()
        self._listeners.clear()
