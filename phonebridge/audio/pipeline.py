"""The phone side of the transcoding: Twilio's 8 kHz mu-law <-> the model's 24 kHz PCM.

The model side (Ogg/Opus or raw PCM, per provider) lives in
:mod:`phonebridge.audio.opus_stream` and the model clients. Each direction is
one stateful object per call so the resampler's filter state survives from one
20 ms frame to the next.
"""

from __future__ import annotations

from phonebridge.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from phonebridge.audio.resample import Downsampler24kTo8k, Upsampler8kTo24k


class PhoneToModel:
    """mu-law 8 kHz (Twilio ``media`` payloads) -> s16le 24 kHz PCM for the model.

    Every mu-law byte gives exactly 3 PCM samples (6 bytes): 160 B -> 960 B.
    """

    def __init__(self) -> None:
        self._upsampler = Upsampler8kTo24k()
        self.delay_samples_24k = self._upsampler.delay_samples_24k

    def push(self, mulaw: bytes) -> bytes:
        return self.push_with_line(mulaw)[1]

    def push_with_line(self, mulaw: bytes) -> tuple[bytes, bytes]:
        """``(pcm8, pcm24)``: the decoded line audio too (the recorder and the
        silence timer want it), without decoding twice."""
        pcm8 = ulaw_to_pcm16(mulaw)
        return pcm8, self._upsampler.push(pcm8)

    def flush(self) -> bytes:
        """The filter's tail (silence in, the last ms of speech out)."""
        return self._upsampler.flush()


class ModelToPhone:
    """s16le 24 kHz PCM from the model -> mu-law 8 kHz for Twilio.

    One mu-law byte per 3 PCM samples; a remainder is held for the next push.
    """

    def __init__(self) -> None:
        self._downsampler = Downsampler24kTo8k()
        self.delay_samples_8k = self._downsampler.delay_samples_8k

    def push(self, pcm24: bytes) -> bytes:
        return self.push_with_line(pcm24)[1]

    def push_with_line(self, pcm24: bytes) -> tuple[bytes, bytes]:
        """``(pcm8, mulaw)``: the 8 kHz PCM that goes on the line, and its mu-law."""
        pcm8 = self._downsampler.push(pcm24)
        return pcm8, pcm16_to_ulaw(pcm8)

    def flush(self) -> bytes:
        return pcm16_to_ulaw(self._downsampler.flush())
