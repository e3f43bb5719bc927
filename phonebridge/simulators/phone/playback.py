"""Twilio's playback buffer for the app's audio, sans-I/O (PROTOCOLS.md §1.3).

Audio the app sends is queued and played in order at 8 bytes of mu-law per
millisecond. A mark is echoed when the audio queued before it has played; a
``clear`` empties the queue and echoes every pending mark at once (so an echo
does not prove the audio was heard). Over 10 minutes buffered is discarded
(Twilio error 31931).

The owner advances the buffer by wall time with :meth:`PlaybackBuffer.play`,
which returns what the caller heard in that interval (silence, ``0xFF``, where
the queue ran dry) and the marks that were reached.

The carrier flavours (:mod:`.carriers`) use the same buffer for PCM16 at their
leg's rate (``silence=b"\\x00\\x00"``, their own size limit); what a carrier
does with the marks pending at a ``clear`` (echo them, or drop them and send
an acknowledgement) is the flavour's choice.
"""

from __future__ import annotations

from collections import deque
from typing import Final

MULAW_SILENCE: Final = 0xFF
BYTES_PER_MS: Final = 8
MAX_BUFFERED_BYTES: Final = 10 * 60 * 1000 * BYTES_PER_MS


class PlaybackBuffer:
    def __init__(
        self, max_buffered_bytes: int = MAX_BUFFERED_BYTES, silence: bytes = bytes([MULAW_SILENCE])
    ) -> None:
        self._queue: deque[bytes | str] = deque()  # bytes = audio, str = a mark's name
        self._audio_bytes = 0
        self._max = max_buffered_bytes
        self._silence = silence  # one sample of silence in the buffer's encoding

    @property
    def buffered_bytes(self) -> int:
        return self._audio_bytes

    def enqueue_audio(self, mulaw: bytes) -> bool:
        """Queue audio; False if it was discarded because the buffer is full."""
        if self._audio_bytes + len(mulaw) > self._max:
            return False
        if mulaw:
            self._queue.append(mulaw)
            self._audio_bytes += len(mulaw)
        return True

    def enqueue_mark(self, name: str) -> list[str]:
        """Queue a mark; returns it at once if no audio is queued before it."""
        if self._audio_bytes == 0:
            return [name]
        self._queue.append(name)
        return []

    def clear(self) -> list[str]:
        """Drop queued audio; returns the pending marks, in order, to echo now."""
        marks = [item for item in self._queue if isinstance(item, str)]
        self._queue.clear()
        self._audio_bytes = 0
        return marks

    def play(self, nbytes: int) -> tuple[bytes, list[str]]:
        """Play ``nbytes`` of timeline: (what was heard, marks reached)."""
        heard = bytearray()
        marks: list[str] = []
        while self._queue:
            head = self._queue[0]
            if isinstance(head, str):
                marks.append(head)
                self._queue.popleft()
                continue
            if len(heard) == nbytes:
                break
            take = min(len(head), nbytes - len(heard))
            heard += head[:take]
            self._audio_bytes -= take
            if take == len(head):
                self._queue.popleft()
            else:
                self._queue[0] = head[take:]
        missing = nbytes - len(heard)
        heard += self._silence * (missing // len(self._silence)) + b"\x00" * (
            missing % len(self._silence)
        )
        return bytes(heard), marks
