"""What the caller hears while a warm transfer rings the human.

Either the persona's own WAV (``transfer.warm.hold_audio``, mono 16-bit, any
rate: converted to the leg's) or, by default, a soft two-note chime every
three seconds, synthesised at the leg's rate: silence would make a caller
think the line dropped. Both are a loop of s16le PCM the call plays in turn.
"""

from __future__ import annotations

import array
import audioop  # stdlib before 3.13, the audioop-lts package from 3.13 on
import math
import wave
from functools import lru_cache
from pathlib import Path
from typing import Final

CHIME_PERIOD_SECONDS: Final = 3.0
CHIME_NOTES: Final = ((660.0, 0.25), (880.0, 0.35))  # (Hz, seconds)
CHIME_LEVEL: Final = 0.12  # of full scale: soft, never louder than speech


@lru_cache(maxsize=8)
def chime(rate: int) -> bytes:
    """A loop: two short notes with a gentle fade, then silence, at ``rate``."""
    samples = array.array("h")
    for freq, seconds in CHIME_NOTES:
        count = int(seconds * rate)
        for n in range(count):
            fade = min(1.0, n / (0.02 * rate), (count - n) / (0.05 * rate))
            value = math.sin(2 * math.pi * freq * n / rate) * CHIME_LEVEL * fade
            samples.append(int(value * 32767))
    total = int(CHIME_PERIOD_SECONDS * rate)
    samples.extend([0] * max(0, total - len(samples)))
    return samples.tobytes()


def load_wav(path: Path, rate: int) -> bytes:
    """A mono 16-bit WAV as s16le PCM at ``rate`` (checked by the persona loader)."""
    stat = path.stat()
    return _load_wav(str(path), stat.st_mtime_ns, stat.st_size, rate)


@lru_cache(maxsize=16)
def _load_wav(path: str, _mtime: int, _size: int, rate: int) -> bytes:
    with wave.open(path, "rb") as wav:
        if (wav.getnchannels(), wav.getsampwidth()) != (1, 2):
            raise ValueError(f"{path}: hold audio must be mono 16-bit PCM")
        source_rate = wav.getframerate()
        pcm = wav.readframes(wav.getnframes())
    if source_rate != rate:
        pcm, _ = audioop.ratecv(pcm, 2, 1, source_rate, rate, None)
    return pcm or bytes(rate // 5)


def hold_loop(wav: Path | None, rate: int) -> bytes:
    """The hold loop for a call at ``rate``: the WAV if given and readable, else the chime."""
    if wav is not None:
        try:
            return load_wav(wav, rate)
        except (OSError, EOFError, ValueError, wave.Error):
            pass  # edited away since the persona loaded: a chime beats dead air
    return chime(rate)
