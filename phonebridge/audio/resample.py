"""Streaming 8 kHz <-> 24 kHz resamplers: polyphase FIR for the exact ratio 3.

Why this design (AUDIO.md, "Resampling"): a linear-phase Kaiser-windowed sinc
gives a few ms of delay and ~100 dB of rejection for tens of µs per frame;
soxr buffers 73 ms, ``audioop.ratecv`` does not filter at all, and per-frame
``resample_poly`` clicks at every frame edge. Filter state is carried across
calls so 20 ms chunks join seamlessly.

The prototype low-pass (175 taps at 24 kHz, -6 dB at 3.75 kHz, Kaiser beta
for 100 dB) is flat within 0.03 dB to 3.4 kHz and at least 99 dB down from
4.2 kHz: everything that would alias (down) or image (up) above 4.2 kHz is
attenuated >= 80 dB with margin. Its delay is (175 - 1) / 2 = 87 samples at
24 kHz = 29 at 8 kHz = 3.625 ms each way (the budget is 4 ms).

Exactness: taps are rounded to integers (units of 2**-20) and the PCM is
integer, so every product and partial sum is an integer below 2**53 and exact
in float64. The result does not depend on the order numpy/BLAS sums in, which
makes pushing in chunks bit-identical to pushing the whole signal.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from phonebridge.errors import AudioError

RATIO: Final[int] = 3
TAPS: Final[int] = 175
CUTOFF_HZ: Final[float] = 3750.0
HIGH_RATE: Final[int] = 24000
STOPBAND_DB: Final[float] = 100.0
_FRACTION_BITS: Final[int] = 20
_UNSCALE: Final[float] = 2.0**-_FRACTION_BITS

Floats = npt.NDArray[np.float64]


def design_prototype() -> Floats:
    """The linear-phase low-pass at 24 kHz, unity gain at DC (floats, not yet quantised)."""
    # Kaiser's formula for the window's beta from the stopband attenuation.
    beta = 0.1102 * (STOPBAND_DB - 8.7)
    centred = np.arange(TAPS) - (TAPS - 1) / 2
    normalised_cutoff = 2 * CUTOFF_HZ / HIGH_RATE
    taps = normalised_cutoff * np.sinc(normalised_cutoff * centred) * np.kaiser(TAPS, beta)
    return np.asarray(taps / taps.sum(), dtype=np.float64)


def _polyphase(gain: float) -> tuple[Floats, ...]:
    """Integer-valued taps split into RATIO phases (phase p holds taps p, p+3, ...)."""
    padded = np.zeros(-(-TAPS // RATIO) * RATIO)  # 177: a whole number of phases
    padded[:TAPS] = np.rint(design_prototype() * gain * 2**_FRACTION_BITS)
    return tuple(padded[p::RATIO].copy() for p in range(RATIO))


# Upsampling stuffs two zeros between samples, which divides the level by 3:
# the up path's taps carry a gain of 3 to make up for it.
_UP_PHASES: Final[tuple[Floats, ...]] = _polyphase(RATIO)
_DOWN_PHASES: Final[tuple[Floats, ...]] = _polyphase(1.0)
PHASE_TAPS: Final[int] = len(_UP_PHASES[0])  # 59
DELAY_24K: Final[int] = (TAPS - 1) // 2  # 87


def _samples(pcm: bytes) -> npt.NDArray[np.int16]:
    if len(pcm) % 2:
        raise AudioError(f"s16le PCM has an even number of bytes, got {len(pcm)}")
    return np.frombuffer(pcm, dtype="<i2")


def _to_pcm(scaled: Floats) -> bytes:
    """Back from units of 2**-20 to s16le, rounding and saturating (no wrap-around)."""
    return np.clip(np.rint(scaled * _UNSCALE), -32768, 32767).astype("<i2").tobytes()


class Upsampler8kTo24k:
    """8 kHz s16le in, 24 kHz s16le out: exactly 3 output samples per input sample."""

    delay_samples_24k: int = DELAY_24K

    def __init__(self) -> None:
        self._history: Floats = np.zeros(PHASE_TAPS - 1)

    def reset(self) -> None:
        """Forget the past: the next push starts from silence."""
        self._history = np.zeros(PHASE_TAPS - 1)

    def push(self, pcm8: bytes) -> bytes:
        """Filter the next samples; returns 3x as many, delayed by ``delay_samples_24k``."""
        samples = _samples(pcm8)
        if not samples.size:
            return b""
        window = np.concatenate((self._history, samples.astype(np.float64)))
        self._history = window[-(PHASE_TAPS - 1) :]
        out = np.empty(samples.size * RATIO)
        for phase, taps in enumerate(_UP_PHASES):
            out[phase::RATIO] = np.convolve(window, taps, "valid")
        return _to_pcm(out)

    def flush(self) -> bytes:
        """The ``delay_samples_24k`` samples still inside the filter; resets the state."""
        tail = self.push(bytes(2 * (DELAY_24K // RATIO)))
        self.reset()
        return tail


class Downsampler24kTo8k:
    """24 kHz s16le in, 8 kHz s16le out: one output sample per 3 input samples.

    A remainder that is not a multiple of 3 is held until the next call, so
    chunk boundaries may fall anywhere.
    """

    delay_samples_8k: int = DELAY_24K // RATIO  # 29

    # Samples of past input the filter needs: the padded length minus one.
    _HISTORY: Final[int] = PHASE_TAPS * RATIO - 1  # 176

    def __init__(self) -> None:
        self._history: Floats = np.zeros(self._HISTORY)
        self._pending: npt.NDArray[np.int16] = np.zeros(0, dtype=np.int16)

    def reset(self) -> None:
        """Forget the past and any held remainder."""
        self._history = np.zeros(self._HISTORY)
        self._pending = np.zeros(0, dtype=np.int16)

    def push(self, pcm24: bytes) -> bytes:
        """Filter and decimate; returns (held + new samples) // 3 samples."""
        samples = _samples(pcm24)
        if self._pending.size:
            samples = np.concatenate((self._pending, samples))
        usable = samples.size - samples.size % RATIO
        self._pending = samples[usable:]
        if not usable:
            return b""
        outputs = usable // RATIO
        window = np.concatenate((self._history, samples[:usable].astype(np.float64)))
        self._history = window[-self._HISTORY :]
        # y[m] = sum_k h[k] x[3m - k]; with k = 3j + p this is a sum over phases p
        # of phase p's taps run over every third sample, starting at 2 - p.
        out = np.zeros(outputs)
        for phase, taps in enumerate(_DOWN_PHASES):
            start = RATIO - 1 - phase
            stream = window[start::RATIO][: PHASE_TAPS - 1 + outputs]
            out += np.convolve(stream, taps, "valid")
        return _to_pcm(out)

    def flush(self) -> bytes:
        """Output for a held remainder (zero-padded) plus the filter's tail; resets."""
        padding = (-self._pending.size) % RATIO + RATIO * self.delay_samples_8k
        tail = self.push(bytes(2 * padding))
        self.reset()
        return tail
