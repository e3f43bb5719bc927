"""The audio the simulated server sends, shaped like sphn 0.1.x (PROTOCOLS.md §2.4). TEST DOUBLE.

Pages are built with :class:`phonebridge.audio.ogg.OggPage` rather than
:class:`~phonebridge.audio.ogg.OggOpusWriter` because the real server bends
RFC 7845 in ways our writer rightly refuses to: its OpusHead declares
pre-skip 3840, and its granule positions count 24 kHz samples instead of
48 kHz ones. Each step is ONE 80 ms (1920-sample) Opus packet on one page;
:class:`phonebridge.audio.opus.OpusEncoder` only makes 20 ms packets, so the
simulator calls libopus through ``opuslib`` with an 80 ms frame size.
"""

from __future__ import annotations

import secrets
from typing import Final

import opuslib

from phonebridge.audio.ogg import FLAG_BOS, OggPage, OpusHead, lacing, opus_tags

SAMPLE_RATE: Final[int] = 24000
STEP_SAMPLES: Final[int] = 1920  # one model step: 80 ms at 24 kHz (§2.3 step 5)
STEP_BYTES: Final[int] = STEP_SAMPLES * 2
SPHN_PRE_SKIP: Final[int] = 3840  # what sphn 0.1 writes into its OpusHead


class ServerOggWriter:
    """Two header pages, then one page per 80 ms step with 24 kHz granules."""

    def __init__(self) -> None:
        self._encoder = opuslib.Encoder(SAMPLE_RATE, 1, opuslib.APPLICATION_VOIP)
        self._serial = secrets.randbits(32)
        self._sequence = 0
        self._granule = 0

    def headers(self) -> bytes:
        head = OpusHead(1, 1, SPHN_PRE_SKIP, SAMPLE_RATE, 0, 0).to_bytes()
        tags = opus_tags("phonebridge simulator (sphn 0.1 style)")
        return self._page(FLAG_BOS, head) + self._page(0, tags)

    def step(self, pcm: bytes) -> bytes:
        """One page holding one 1920-sample Opus packet of ``pcm`` (3840 bytes)."""
        packet: bytes = self._encoder.encode(pcm, STEP_SAMPLES)
        self._granule += STEP_SAMPLES  # 24 kHz samples, like sphn 0.1 (not RFC 7845's 48 kHz)
        return self._page(0, packet)

    def _page(self, flags: int, packet: bytes) -> bytes:
        page = OggPage(
            flags, self._granule, self._serial, self._sequence, tuple(lacing(len(packet))), packet
        )
        self._sequence += 1
        return page.to_bytes()
