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
