"""Helpers for the Talk page tests: a wideband caller file, spectra, Chromium launch."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from phonebridge.assets import __file__ as _assets_init

CHROMIUM = Path("/usr/bin/chromium")
EXECUTABLE = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
SPEECH = Path(_assets_init).with_name("demo_caller.wav")
FILE_RATE = 48_000
QUIET_SECONDS = 1.5
VOICED_SECONDS = 2.0
TONE_HZ = 6_000.0


def chromium_args(capture: Path) -> list[str]:
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={capture}",
    ]


def write_wideband_caller(path: Path) -> Path:
    """A looping caller: 1.5 s quiet, then 2 s of speech with a 6 kHz tone on it.

    The speech asset is a phone recording (nothing above 4 kHz); the tone is
    what only a wideband leg can carry.
    """
    with wave.open(str(SPEECH), "rb") as wav:
        rate = wav.getframerate()
        speech = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float64)
    start = int(1.0 * rate)
    piece = speech[start : start + int(VOICED_SECONDS * rate)]
    t_out = np.arange(int(VOICED_SECONDS * FILE_RATE)) / FILE_RATE
    voiced = np.interp(t_out, np.arange(len(piece)) / rate, piece) / 32768
    voiced = voiced / max(1e-9, float(np.max(np.abs(voiced)))) * 0.5
    voiced += 0.2 * np.sin(2 * np.pi * TONE_HZ * t_out)
    quiet = np.zeros(int(QUIET_SECONDS * FILE_RATE))
    signal = np.concatenate([quiet, voiced])
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(FILE_RATE)
        out.writeframes((np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def samples(pcm: bytes | bytearray) -> npt.NDArray[np.float64]:
    return np.frombuffer(bytes(pcm), "<i2").astype(np.float64)


def energy_above(pcm: bytes | bytearray, rate: int, hz: float) -> float:
    """The share of the signal's energy above ``hz``."""
    x = samples(pcm)
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    total = float(spectrum.sum()) or 1.0
    return float(spectrum[freqs > hz].sum()) / total


def voiced_runs(pcm: bytes | bytearray, rate: int, block: float = 0.1) -> list[float]:
    """Lengths (s) of the loud stretches, 100 ms blocks, threshold at a tenth of the peak."""
    x = samples(pcm)
    size = int(rate * block)
    blocks = x[: len(x) - len(x) % size].reshape(-1, size)
    rms = np.sqrt((blocks**2).mean(axis=1))
    loud = rms > rms.max() / 10
    runs: list[float] = []
    count = 0
    for flag in loud:
        if flag:
            count += 1
        elif count:
            runs.append(count * block)
            count = 0
    return runs
