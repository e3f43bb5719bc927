"""Small PCM16 conversions the carriers need: byte order, A-law, integer-ratio rates.

- **Byte order** (CARRIERS.md §8.4): Telnyx L16 is big-endian (RTP); the
  bridge works in little-endian. Getting it wrong is loud noise, not silence.
- **A-law** (G.711 PCMA): Telnyx may stream a call's PCMA as is. Decoding uses
  :func:`audioop.alaw2lin` (exact for all 256 codes, as for mu-law in
  :mod:`phonebridge.audio.g711`).
- **Integer-ratio rate change** (:class:`RatioResampler`): only for the rare
  leg whose two directions the carrier runs at different rates (Telnyx falls
  back to the call's 8 kHz codec inbound while the app's audio is L16 16 kHz).
  Linear interpolation up, block averaging down, state carried across pushes so
  frame edges do not click. It is not the model path's resampler: quality is
  telephone-grade, which is all an 8 kHz leg carries anyway.
"""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt

from phonebridge.errors import AudioError

with warnings.catch_warnings():
    # audioop is deprecated on 3.11-3.12 (PEP 594); audioop-lts carries it on.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


def swap16(pcm: bytes) -> bytes:
    """PCM16 with each sample's two bytes swapped (big- <-> little-endian)."""
    if len(pcm) % 2:
        raise AudioError(f"PCM16 has an even number of bytes, got {len(pcm)}")
    return np.frombuffer(pcm, dtype="<i2").byteswap().tobytes()


def alaw_to_pcm16(data: bytes) -> bytes:
    """G.711 A-law bytes -> s16le PCM."""
    return audioop.alaw2lin(data, 2)


def pcm16_to_alaw(pcm: bytes) -> bytes:
    """s16le PCM -> G.711 A-law (used by simulators that play a PCMA call)."""
    if len(pcm) % 2:
        raise AudioError(f"PCM16 has an even number of bytes, got {len(pcm)}")
    return audioop.lin2alaw(pcm, 2)


class RatioResampler:
    """Streaming PCM16 rate change by an integer ratio (``push``/``flush``)."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        if from_rate <= 0 or to_rate <= 0:
            raise AudioError("rates must be positive")
        high, low = max(from_rate, to_rate), min(from_rate, to_rate)
        if high % low:
            raise AudioError(f"{from_rate} -> {to_rate} Hz is not an integer ratio")
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._factor = high // low
        self._up = to_rate > from_rate
        self._last = 0.0  # previous input sample (upsampling)
        self._pending: npt.NDArray[np.int16] = np.zeros(0, dtype=np.int16)  # (downsampling)

    def push(self, pcm: bytes) -> bytes:
        if len(pcm) % 2:
            raise AudioError(f"PCM16 has an even number of bytes, got {len(pcm)}")
        samples = np.frombuffer(pcm, dtype="<i2")
        if self._factor == 1 or not len(samples):
            return pcm if self._factor == 1 else b""
        if self._up:
            return self._upsample(samples)
        return self._downsample(samples)

    def _upsample(self, samples: npt.NDArray[np.int16]) -> bytes:
        k = self._factor
        previous = np.concatenate(([self._last], samples[:-1].astype(np.float64)))
        current = samples.astype(np.float64)
        steps = (np.arange(1, k + 1, dtype=np.float64) / k)[None, :]
        out = previous[:, None] + (current - previous)[:, None] * steps
        self._last = float(samples[-1])
        return np.clip(np.rint(out.reshape(-1)), -32768, 32767).astype("<i2").tobytes()

    def _downsample(self, samples: npt.NDArray[np.int16]) -> bytes:
        k = self._factor
        joined = np.concatenate((self._pending, samples))
        whole = len(joined) - len(joined) % k
        self._pending = joined[whole:]
        blocks = joined[:whole].astype(np.int32).reshape(-1, k)
        means: npt.NDArray[np.float64] = blocks.mean(axis=1)
        return bytes(np.rint(means).astype("<i2").tobytes())

    def flush(self) -> bytes:
        """Nothing is held back when upsampling; a partial block is dropped when downsampling."""
        self._pending = np.zeros(0, dtype=np.int16)
        return b""
