"""Ogg Opus streams as the model clients use them (PROTOCOLS.md §2.3-2.4, RFC 7845).

:class:`OggOpusEncodeStream` owns ONE encoder and ONE Ogg writer for the life
of a model socket: the headers go out exactly once, because a second BOS page
(an encoder restarted mid-call) kills a PersonaPlex session (§2.3).
:class:`OggOpusDecodeStream` turns the server's Ogg bytes, split or joined
anyhow, into PCM.

Both take the PCM rate as a parameter. An Opus stream has no fixed rate of its
own (RFC 6716 §2: any decoder rate works with any encoder rate), so the bridge
encodes the phone line's 8 kHz audio directly and decodes the model's
replies straight to 8 kHz: libopus changes the rate inside the codec (CELT
drops the bands above 4 kHz before its inverse transform, SILK resamples
internally), which costs less than our polyphase filters and adds no filter
delay. PersonaPlex decodes the stream at 24 kHz whatever it was encoded from
(PROTOCOLS.md §2.4).
"""

from __future__ import annotations

import secrets

from phonebridge.audio.frames import FrameChunker
from phonebridge.audio.ogg import OggOpusReader, OggOpusWriter, OpusHead
from phonebridge.audio.opus import (
    DEFAULT_BITRATE,
    DEFAULT_COMPLEXITY,
    DEFAULT_MAX_BANDWIDTH,
    OpusDecoder,
    OpusEncoder,
)
from phonebridge.errors import LocalProtocolError

SAMPLE_RATE = 24000  # the default: the model's own rate
FRAME_MS = 20


def frame_bytes(sample_rate: int) -> int:
    """Bytes in 20 ms of s16le mono at ``sample_rate``."""
    return sample_rate * FRAME_MS // 1000 * 2


FRAME_BYTES = frame_bytes(SAMPLE_RATE)


class OggOpusEncodeStream:
    """PCM in (``sample_rate``), Ogg pages out: a page per ``packets_per_page`` 20 ms packets.

    One packet per page is the lowest latency for a reader that uses audio as
    soon as it arrives. A reader that consumes audio in larger blocks gains
    nothing from earlier pieces, and each page is a message, a socket write
    and a CRC: see OggStreamProtocol for the model's 80 ms step.
    """

    def __init__(
        self,
        *,
        sample_rate: int = SAMPLE_RATE,
        serial: int | None = None,
        complexity: int = DEFAULT_COMPLEXITY,
        bitrate: int | None = DEFAULT_BITRATE,
        packets_per_page: int = 1,
        max_bandwidth: int | None = DEFAULT_MAX_BANDWIDTH,
    ) -> None:
        if packets_per_page < 1:
            raise ValueError(f"packets_per_page must be at least 1, got {packets_per_page}")
        self._encoder = OpusEncoder(
            sample_rate, complexity=complexity, bitrate=bitrate, max_bandwidth=max_bandwidth
        )
        # A random serial, as RFC 3533 §6 asks, so streams can be told apart in captures.
        self.serial = secrets.randbits(32) if serial is None else serial
        self._writer = OggOpusWriter(
            serial=self.serial,
            pre_skip=self._encoder.lookahead_48k,
            input_sample_rate=sample_rate,
        )
        self._chunker = FrameChunker(frame_bytes(sample_rate))
        self.complexity = complexity
        self._packets_per_page = packets_per_page
        self._packets: list[bytes] = []  # encoded, waiting for their page to fill
        self._started = False

    def headers(self) -> bytes:
        """The BOS OpusHead page and the OpusTags page; raises if called twice."""
        pages = self._writer.headers()
        self._started = True
        return pages

    def push(self, pcm: bytes) -> bytes:
        """Feed PCM of any length; returns the pages its 20 ms frames complete (maybe none)."""
        if not self._started:
            # Audio before the BOS page would kill the server session (§2.3).
            raise LocalProtocolError("push() before headers(): the BOS page must go first")
        pages = b""
        for frame in self._chunker.push(pcm):
            self._packets.append(self._encoder.encode(frame))
            if len(self._packets) == self._packets_per_page:
                pages += self._writer.write_packets(self._packets)
                self._packets = []
        return pages

    def close(self) -> bytes:
        """Any packets still waiting, then the EOS page. A last frame under 20 ms is dropped."""
        self._chunker.flush()
        pages = self._writer.write_packets(self._packets) if self._packets else b""
        self._packets = []
        return pages + self._writer.close()


class OggOpusDecodeStream:
    """Ogg Opus bytes in (any split), decoded PCM out at ``sample_rate``.

    Output is every decoded sample, pre-skip included, unless ``trim_pre_skip``:
    on a live conversation the first few ms are silence either way, and one
    server page in -> exactly one 80 ms block out keeps the callers' timing
    simple (the server's granules cannot be trusted for it: §2.4).
    """

    def __init__(self, *, sample_rate: int = SAMPLE_RATE, trim_pre_skip: bool = False) -> None:
        self._reader = OggOpusReader()
        self._decoder = OpusDecoder(sample_rate)
        self._samples_per_48k = sample_rate / 48000
        self._trim_bytes: int | None = None if trim_pre_skip else 0

    @property
    def head(self) -> OpusHead | None:
        """The stream's OpusHead once it has arrived."""
        return self._reader.head

    def push(self, data: bytes) -> bytes:
        """Feed Ogg bytes; returns the PCM of every audio packet they complete.

        Raises :class:`~phonebridge.errors.OggError` on a corrupt stream and
        :class:`~phonebridge.errors.OpusError` on a packet libopus rejects
        (catch :class:`~phonebridge.errors.AudioError` for both).
        """
        packets = self._reader.push(data)
        if not packets:
            return b""
        pcm = b"".join(self._decoder.decode(packet) for packet in packets)
        if self._trim_bytes is None:
            head = self._reader.head
            assert head is not None  # audio packets only ever follow an OpusHead
            # pre-skip counts 48 kHz samples (RFC 7845 §4.2), two bytes each here.
            self._trim_bytes = int(head.pre_skip * self._samples_per_48k) * 2
        if self._trim_bytes:
            cut = min(self._trim_bytes, len(pcm))
            pcm = pcm[cut:]
            self._trim_bytes -= cut
        return pcm
