"""Signal measurements for tests, benchmarks and the simulators' self-checks.

Test signals (tones), levels, alignment by cross-correlation and SNR: the
figures the audio tests hold the transcoding path to, kept in one place so a
benchmark or a demo measures quality exactly the way the tests do.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.float64]


def tone(freq_hz: float, seconds: float, rate: int, amplitude: float = 16000.0) -> bytes:
    """A sine of ``freq_hz`` as s16le PCM."""
    t = np.arange(int(seconds * rate)) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * freq_hz * t)).astype("<i2").tobytes()


def samples(pcm: bytes) -> Samples:
    """s16le PCM as float64 samples."""
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def rms(x: Samples) -> float:
    return float(np.sqrt(np.mean(x * x)))


def db(ratio: float) -> float:
    """An amplitude ratio in decibels."""
    return float(20 * np.log10(ratio))


def best_lag(reference: Samples, delayed: Samples, max_lag: int) -> int:
    """The lag in samples, 0..max_lag-1, at which ``delayed`` best matches ``reference``."""
    n = min(len(reference), len(delayed) - max_lag)
    scores = [float(np.dot(reference[:n], delayed[lag : lag + n])) for lag in range(max_lag)]
    return int(np.argmax(scores))


def snr_db(reference: Samples, test: Samples) -> float:
    """SNR of ``test`` against ``reference`` (same length) after a least-squares gain match."""
    gain = float(np.dot(reference, test) / np.dot(reference, reference))
    noise = test - gain * reference
    return db(rms(gain * reference) / rms(noise))


def aligned_snr_db(reference: Samples, test: Samples, lags: range, edge: int = 0) -> float:
    """The best :func:`snr_db` of ``test`` delayed by any of ``lags`` samples.

    ``edge`` samples are left out at both ends of ``reference`` (start-up and
    tail transients). For periodic signals, where cross-correlation cannot
    tell one period from the next, search a narrow range of lags.
    """
    length = min(reference.size - 2 * edge, test.size - edge - max(lags))
    ref = reference[edge : edge + length]
    return max(snr_db(ref, test[edge + lag : edge + lag + length]) for lag in lags)
