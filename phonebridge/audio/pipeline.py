"""The phone side of the transcoding: Twilio's 8 kHz mu-law <-> the line's 8 kHz PCM.

The model sessions speak the line's rate (phonebridge/models/base.py); each
provider's client turns that into its wire format (libopus at 8 kHz for the
Ogg/Opus providers, the polyphase resamplers for fal's 24 kHz PCM). What is
left here is G.711, one stateful object per direction so a call's remainder
bytes survive from one message to the next.
"""

from __future__ import annotations

from phonebridge.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16


class PhoneToModel:
    """mu-law 8 kHz (Twilio ``media`` payloads) -> s16le 8 kHz PCM for the model session.

    Every mu-law byte gives one PCM sample (2 bytes): 160 B -> 320 B.
    """

    def push(self, mulaw: bytes) -> bytes:
        return ulaw_to_pcm16(mulaw)


class ModelToPhone:
    """s16le 8 kHz PCM from the model session -> mu-law 8 kHz for Twilio.

    One mu-law byte per sample; an odd trailing byte is held for the next push.
    """

    def __init__(self) -> None:
        self._odd = b""

    def push(self, pcm8: bytes) -> bytes:
        if self._odd:
            pcm8 = self._odd + pcm8
        whole = len(pcm8) - len(pcm8) % 2
        self._odd = pcm8[whole:]
        return pcm16_to_ulaw(pcm8[:whole])
