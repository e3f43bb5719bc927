"""Fixed-size framing of a byte stream (20 ms frames for Opus and for Twilio).

Audio arrives in whatever sizes the peer chose (Twilio's are observed, not
promised, to be 160 bytes: PROTOCOLS.md §1.2); codecs need exact frames.
"""

from __future__ import annotations


class FrameChunker:
    """Cuts a byte stream into frames of ``frame_bytes``, keeping the remainder."""

    def __init__(self, frame_bytes: int) -> None:
        if frame_bytes <= 0:
            raise ValueError(f"frame_bytes must be positive, not {frame_bytes}")
        self.frame_bytes = frame_bytes
        self._pending = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of their frame."""
        return len(self._pending)

    def push(self, data: bytes) -> list[bytes]:
        """Feed bytes; returns every frame they complete, in order."""
        size = self.frame_bytes
        if not self._pending and len(data) == size:
            return [bytes(data)]  # the usual case: already one frame, no copying
        self._pending += data
        whole = len(self._pending) - len(self._pending) % size
        frames = [bytes(self._pending[i : i + size]) for i in range(0, whole, size)]
        del self._pending[:whole]
        return frames

    def flush(self) -> bytes:
        """Return (and forget) the incomplete remainder; may be empty."""
        rest = bytes(self._pending)
        self._pending.clear()
        return rest
