"""WAV in and out for the phone simulator (stdlib :mod:`wave`).

Input: 16-bit mono at 8 kHz (used as is) or 24 kHz (the PersonaPlex rate;
brought down with the project's own resampler). Anything else is refused with
the sox command that converts it — resampling arbitrary rates is not this
tool's job. Output: what the caller heard, 8 kHz 16-bit mono.
"""

from __future__ import annotations

import wave
from pathlib import Path

from phonebridge.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from phonebridge.audio.pcm import RatioResampler
from phonebridge.audio.resample import Downsampler24kTo8k
from phonebridge.errors import AudioError


def read_wav_as_mulaw(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
        pcm = wav.readframes(wav.getnframes())
    if channels != 1 or width != 2 or rate not in (8000, 24000):
        raise AudioError(
            f"{path}: {rate} Hz, {channels} channel(s), {8 * width}-bit; need 16-bit mono at "
            f"8000 or 24000 Hz (convert: sox {path} -r 8000 -c 1 -b 16 caller.wav)"
        )
    if rate == 24000:
        down = Downsampler24kTo8k()
        pcm = down.push(pcm) + down.flush()
    return pcm16_to_ulaw(pcm)


def write_mulaw_as_wav(path: Path, mulaw: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(ulaw_to_pcm16(mulaw))


def read_wav_as_pcm16(path: Path, rate: int) -> bytes:
    """A caller WAV as PCM16 little-endian at a carrier leg's ``rate`` (8, 16 or 24 kHz).

    16-bit mono at 8, 16 or 24 kHz is accepted; a different rate is brought to
    ``rate`` by an integer ratio (telephone-grade: the leg carries no better).
    """
    with wave.open(str(path), "rb") as wav:
        source, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
        pcm = wav.readframes(wav.getnframes())
    if channels != 1 or width != 2 or source not in (8000, 16000, 24000):
        raise AudioError(
            f"{path}: {source} Hz, {channels} channel(s), {8 * width}-bit; need 16-bit mono at "
            f"8000, 16000 or 24000 Hz (convert: sox {path} -r {rate} -c 1 -b 16 caller.wav)"
        )
    if source == rate:
        return pcm
    try:
        return RatioResampler(source, rate).push(pcm)
    except AudioError as exc:
        raise AudioError(f"{path}: {exc} (convert with sox to {rate} Hz)") from None


def write_pcm16_wav(path: Path, pcm16: bytes, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm16)
