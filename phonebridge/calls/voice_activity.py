"""Caller silence: "hang up after N seconds of caller silence" (persona limits).

An energy gate, not a VAD model: for a hang-up timer measured in tens of
seconds the question is only "has the caller made any sound lately", and a
level threshold answers it for the cost of one ``audioop.rms`` per frame.
Twilio sending no media at all (§1.2) counts as silence too, because the
timer runs on the call's clock, not on arriving frames.
"""

from __future__ import annotations

import audioop  # stdlib before 3.13, the audioop-lts package from 3.13 on

# About -40 dBFS: louder than line noise and mu-law idle, quieter than speech.
VOICE_RMS_THRESHOLD = 330


class SilenceTimer:
    """Tracks when the caller last made a sound; ``limit=None`` never expires."""

    def __init__(
        self, limit_seconds: float | None, *, threshold: int = VOICE_RMS_THRESHOLD
    ) -> None:
        self._limit = limit_seconds
        self._threshold = threshold
        self._last_voice = 0.0

    def observe(self, pcm8: bytes, now: float) -> bool:
        """Look at one caller frame; returns whether it held voice."""
        voiced = bool(pcm8) and audioop.rms(pcm8, 2) >= self._threshold
        if voiced:
            self._last_voice = now
        return voiced

    def expired(self, now: float) -> bool:
        return self._limit is not None and now - self._last_voice >= self._limit

    def restart(self, now: float) -> None:
        """Count from ``now`` (a caller back from hold was not silent on purpose)."""
        self._last_voice = max(self._last_voice, now)
