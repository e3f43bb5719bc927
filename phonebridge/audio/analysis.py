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
    noise = rms(test - gain * reference)
    return float("inf") if noise == 0 else db(rms(gain * reference) / noise)


def aligned_snr_db(reference: Samples, test: Samples, lags: range, edge: int = 0) -> float:
    """The best :func:`snr_db` of ``test`` delayed by any of ``lags`` samples.

    ``edge`` samples are left out at both ends of ``reference`` (start-up and
    tail transients). For periodic signals, where cross-correlation cannot
    tell one period from the next, search a narrow range of lags.
    """
    length = min(reference.size - 2 * edge, test.size - edge - max(lags))
    ref = reference[edge : edge + length]
    return max(snr_db(ref, test[edge + lag : edge + lag + length]) for lag in lags)


def spectral_snr_db(
    reference: Samples, test: Samples, rate: int, band: tuple[float, float] = (300.0, 3400.0)
) -> float:
    """SNR of short-time magnitude spectra within ``band`` (32 ms Hann frames, half overlap).

    Waveform SNR punishes a codec for phase it is free to change (Opus's SILK
    layer does not preserve the waveform); comparing magnitude spectra over the
    telephone band tracks what a listener hears. Align the signals first.
    """
    size = int(0.032 * rate)
    length = min(reference.size, test.size)
    window = np.hanning(size)
    starts = range(0, length - size, size // 2)
    freqs = np.fft.rfftfreq(size, 1 / rate)
    keep = (freqs >= band[0]) & (freqs <= band[1])

    def spectra(x: Samples) -> Samples:
        frames = np.stack([x[i : i + size] * window for i in starts])
        return np.abs(np.fft.rfft(frames, axis=1))[:, keep]

    ref, out = spectra(reference), spectra(test)
    return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - out) ** 2)))


def sinad_db(
    signal: Samples, rate: int, freq_hz: float, band: tuple[float, float] = (50.0, 3400.0)
) -> float:
    """Signal to noise-and-distortion of a tone: power within 30 Hz of ``freq_hz``
    against the rest of ``band``. Needs no alignment, so it suits codecs whose
    delay drifts (SILK shifts a tone's phase over time)."""
    spectrum = np.abs(np.fft.rfft(signal * np.blackman(signal.size))) ** 2
    freqs = np.fft.rfftfreq(signal.size, 1 / rate)
    in_band = (freqs >= band[0]) & (freqs <= band[1])
    near = np.abs(freqs - freq_hz) <= 30
    tone_power = float(spectrum[near].sum())
    rest = float(spectrum[in_band & ~near].sum())
    return float(10 * np.log10(tone_power / rest))
