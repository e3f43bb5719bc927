"""The 20 ms clock that feeds the model: caller audio at exactly real time.

PersonaPlex has no clock of its own (PROTOCOLS.md §2.3 step 5): it produces one
output step per 80 ms of *input*, so the bridge must send audio for the whole
call, silence included, and Twilio may send nothing at all while the caller is
quiet (§1.2). It has no backpressure either (§2.3 step 6): anything sent faster
than real time becomes latency that never goes away.

:class:`InputPacer` reconciles the two. It is sans-I/O: time is passed in, and
:meth:`InputPacer.next_deadline` says when the caller should wake it.

- A caller frame is forwarded *at once* when the model's input is not ahead
  of real time by more than ``lead_frames`` (so the bridge adds no delay on the
  normal path, and Twilio's jitter passes through untouched).
- Frames that would run ahead are queued; the queue is capped at
  ``max_queue_frames`` and the *oldest* frames are dropped beyond it, because
  for a live conversation the newest audio matters and queued audio is delay.
- When the caller has sent nothing for ``fill_after_frames`` frame periods,
  the pacer emits silence to keep the input at real time.
- After a stall of the event loop the pacer catches up by at most
  ``max_catch_up_frames`` frames and then re-bases its clock rather than
  bursting seconds of silence into the model.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

FRAME_SECONDS = 0.020


@dataclass(slots=True)
class PacerStats:
    """Counters for metrics and the call record."""

    caller_frames: int = 0
    silence_frames: int = 0
    dropped_frames: int = 0  # after the model was ready: audio the caller lost
    discarded_before_ready: int = 0  # while the model conditioned: by design (§2.6)
    rebased: int = 0


class InputPacer:
    """Decides which 20 ms frame goes to the model, and when.

    Frames are opaque ``bytes`` (24 kHz PCM in practice); ``silence`` is the
    frame sent to fill gaps.
    """

    def __init__(
        self,
        silence: bytes,
        *,
        lead_frames: int = 2,
        fill_after_frames: int = 2,
        max_queue_frames: int = 3,
        max_catch_up_frames: int = 5,
    ) -> None:
        self._silence = silence
        self._lead = lead_frames
        self._fill_after = fill_after_frames
        self._max_queue = max_queue_frames
        self._max_catch_up = max_catch_up_frames
        self._queue: deque[bytes] = deque()
        self._origin: float | None = None
        self._sent = 0
        self.stats = PacerStats()

    @property
    def started(self) -> bool:
        return self._origin is not None

    def start(self, now: float) -> None:
        """Begin the model's timeline (the model just became ready)."""
        self._origin = now
        self._sent = 0
        self._queue.clear()

    def _due(self, now: float) -> int:
        """Frames that real time allows to have been sent by ``now``."""
        assert self._origin is not None
        # The epsilon keeps a tick that lands exactly on a frame boundary from
        # losing that frame to floating-point rounding.
        return int((now - self._origin) / FRAME_SECONDS + 1e-6) + 1

    def push_caller(self, frame: bytes, now: float) -> list[bytes]:
        """A caller frame arrived; returns the frames to send now (maybe none)."""
        if self._origin is None:
            # Before the model is ready caller audio is dropped, not queued
            # (ARCHITECTURE.md, life of a call step 2).
            self.stats.discarded_before_ready += 1
            return []
        self._queue.append(frame)
        if len(self._queue) > self._max_queue:
            self._queue.popleft()
            self.stats.dropped_frames += 1
        return self._drain(now)

    def tick(self, now: float) -> list[bytes]:
        """The clock woke us; returns queued frames now allowed and gap-filling silence."""
        if self._origin is None:
            return []
        out = self._drain(now)
        due = self._due(now)
        missing = due - self._fill_after - self._sent
        if missing > self._max_catch_up:
            # The loop stalled (or the process was suspended): re-base instead of
            # bursting a backlog into a model that has no backpressure.
            self._origin = now - (self._fill_after + self._max_catch_up) * FRAME_SECONDS
            self._origin -= (self._sent - 1) * FRAME_SECONDS
            self.stats.rebased += 1
            missing = self._due(now) - self._fill_after - self._sent
        for _ in range(max(0, missing)):
            out.append(self._silence)
            self._sent += 1
            self.stats.silence_frames += 1
        return out

    def _drain(self, now: float) -> list[bytes]:
        out: list[bytes] = []
        allowed = self._due(now) + self._lead
        while self._queue and self._sent < allowed:
            out.append(self._queue.popleft())
            self._sent += 1
            self.stats.caller_frames += 1
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`tick` has something to do next (monotonic seconds)."""
        if self._origin is None:
            return None
        if self._queue:
            # The next frame slot that real time opens for the queue.
            return self._origin + (self._sent - self._lead) * FRAME_SECONDS
        return self._origin + (self._sent + self._fill_after) * FRAME_SECONDS

    @property
    def frames_sent(self) -> int:
        return self._sent
