"""Ogg pages (RFC 3533) carrying one Opus stream (RFC 7845), written and read incrementally.

Writer: an OpusHead BOS page and an OpusTags page (RFC 7845 §5), then one
Opus packet per page — the lowest latency Ogg allows — with granule positions
counting 48 kHz samples (§4), and an EOS page on close.

Readers are incremental: bytes may arrive split or concatenated arbitrarily.
Bytes before a capture pattern are junk and are skipped (RFC 3533 §6, the way
a decoder regains sync); but once ``OggS`` starts a page, that page must be
well formed and its CRC must match, else :class:`~phonebridge.errors.OggError`
is raised and the reader stays failed. A corrupt page on a reliable transport
means a broken peer, not line noise (the PersonaPlex server itself dies on a
bad CRC, PROTOCOLS.md §2.3).

The PersonaPlex server's own stream bends RFC 7845 (PROTOCOLS.md §2.4: granules
in 24 kHz samples, pre-skip 3840, input rate 48000 on newer sphn): nothing here
uses granule positions of received pages for timing.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final

from phonebridge.audio.opus import packet_samples_48k
from phonebridge.errors import LocalProtocolError, OggError, OpusError

# -- CRC (RFC 3533 §6: "CRC checksum") --------------------------------------

# Ogg's CRC-32 is the unreflected (MSB-first) form of polynomial 0x04C11DB7 with
# init 0 and no final xor. zlib.crc32 is the reflected form with init and final
# xor 0xFFFFFFFF. A reflected CRC of bit-reversed bytes, bit-reversed, is the
# unreflected CRC; passing 0xFFFFFFFF as the running value cancels zlib's init
# and xor-ing the result cancels its final xor. That runs in C (~0.7 µs a page)
# where a pure-Python table loop costs ~18 µs (AUDIO.md).
_BIT_REVERSED: Final[bytes] = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def ogg_crc32(data: bytes) -> int:
    """The Ogg page checksum of ``data`` (computed with the CRC field zeroed)."""
    reflected = zlib.crc32(data.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int.from_bytes(reflected.to_bytes(4, "little").translate(_BIT_REVERSED), "big")


# -- pages --------------------------------------------------------------------

CAPTURE: Final[bytes] = b"OggS"
FLAG_CONTINUED: Final[int] = 0x01
FLAG_BOS: Final[int] = 0x02
FLAG_EOS: Final[int] = 0x04
_HEADER: Final[struct.Struct] = struct.Struct("<4sBBqIIIB")  # up to page_segments
HEADER_SIZE: Final[int] = _HEADER.size  # 27
_CRC_OFFSET: Final[int] = 22
MAX_SEGMENTS: Final[int] = 255
MAX_PAGE_SIZE: Final[int] = HEADER_SIZE + MAX_SEGMENTS + MAX_SEGMENTS * 255


@dataclass(frozen=True, slots=True)
class OggPage:
    """One Ogg page; ``segments`` is its lacing table (RFC 3533 §6)."""

    header_type: int
    granule_position: int
    serial: int
    sequence: int
    segments: tuple[int, ...]
    body: bytes

    @property
    def continued(self) -> bool:
        """The first packet on this page continues one from the previous page."""
        return bool(self.header_type & FLAG_CONTINUED)

    @property
    def bos(self) -> bool:
        return bool(self.header_type & FLAG_BOS)

    @property
    def eos(self) -> bool:
        return bool(self.header_type & FLAG_EOS)

    def to_bytes(self) -> bytes:
        """Serialise the page, CRC included."""
        header = _HEADER.pack(
            CAPTURE,
            0,
            self.header_type,
            self.granule_position,
            self.serial,
            self.sequence,
            0,
            len(self.segments),
        )
        page = bytearray(header + bytes(self.segments) + self.body)
        page[_CRC_OFFSET : _CRC_OFFSET + 4] = ogg_crc32(bytes(page)).to_bytes(4, "little")
        return bytes(page)


def lacing(size: int) -> list[int]:
    """Lacing values for one whole packet: 255s then a value < 255 that ends it."""
    return [255] * (size // 255) + [size % 255]


# -- Opus headers (RFC 7845 §5) ----------------------------------------------

_OPUS_HEAD: Final[struct.Struct] = struct.Struct("<8sBBHIhB")  # 19 bytes
OPUS_TAGS_MAGIC: Final[bytes] = b"OpusTags"


@dataclass(frozen=True, slots=True)
class OpusHead:
    """The identification header of an Ogg Opus stream (RFC 7845 §5.1)."""

    version: int
    channels: int
    pre_skip: int
    input_sample_rate: int
    output_gain: int
    mapping_family: int

    def to_bytes(self) -> bytes:
        return _OPUS_HEAD.pack(
            b"OpusHead",
            self.version,
            self.channels,
            self.pre_skip,
            self.input_sample_rate,
            self.output_gain,
            self.mapping_family,
        )


def parse_opus_head(packet: bytes) -> OpusHead:
    """Parse an OpusHead packet; raises :class:`OggError` if it is not one we can play."""
    if len(packet) < _OPUS_HEAD.size or not packet.startswith(b"OpusHead"):
        raise OggError("the first packet of the stream is not an OpusHead")
    _, version, channels, pre_skip, rate, gain, family = _OPUS_HEAD.unpack_from(packet)
    # Only the major version (upper nibble) breaks compatibility (§5.1).
    if version >> 4 != 0:
        raise OggError(f"unsupported OpusHead version {version}")
    if channels == 0:
        raise OggError("OpusHead declares zero channels")
    if family == 0 and channels > 2:
        raise OggError(f"mapping family 0 allows 1 or 2 channels, not {channels}")
    if family != 0 and len(packet) < _OPUS_HEAD.size + 2 + channels:
        raise OggError("OpusHead is missing its channel mapping table")
    return OpusHead(version, channels, pre_skip, rate, gain, family)


def opus_tags(vendor: str) -> bytes:
    """An OpusTags packet with a vendor string and no comments (RFC 7845 §5.2)."""
    encoded = vendor.encode()
    return OPUS_TAGS_MAGIC + struct.pack("<I", len(encoded)) + encoded + struct.pack("<I", 0)


class OggOpusWriter:
    """Turns Opus packets into the pages of one logical Ogg Opus stream."""

    def __init__(
        self,
        *,
        serial: int,
        pre_skip: int,
        input_sample_rate: int = 24000,
        vendor: str = "phonebridge",
    ) -> None:
        self._serial = serial & 0xFFFFFFFF
        self._head = OpusHead(1, 1, pre_skip, input_sample_rate, 0, 0)
        self._vendor = vendor
        self._sequence = 0
        self._granule = 0
        self._started = False
        self._closed = False

    def headers(self) -> bytes:
        """The OpusHead BOS page and the OpusTags page. Exactly once per stream."""
        if self._started:
            # A second BOS page mid-stream kills a PersonaPlex session (PROTOCOLS.md §2.3).
            raise LocalProtocolError("Ogg Opus headers were already written for this stream")
        self._started = True
        return self._page(FLAG_BOS, 0, lacing(19), self._head.to_bytes()) + self._packet_pages(
            opus_tags(self._vendor), 0
        )

    def write_packet(self, packet: bytes) -> bytes:
        """One Opus packet as one page (several only if it exceeds a page, ~64 KiB)."""
        return self.write_packets([packet])

    def write_packets(self, packets: list[bytes]) -> bytes:
        """Opus packets as one page when their lacing fits (255 segments), else a page each.

        The page's granule is the end of its last packet (RFC 3533 §6).
        """
        self._check_writable()
        granules: list[int] = []
        for packet in packets:
            try:
                self._granule += packet_samples_48k(packet)
            except OpusError as exc:
                raise LocalProtocolError(f"not a valid Opus packet: {exc}") from exc
            granules.append(self._granule)
        laces = [lace for packet in packets for lace in lacing(len(packet))]
        if len(packets) > 1 and len(laces) <= MAX_SEGMENTS:
            return self._page(0, self._granule, laces, b"".join(packets))
        return b"".join(map(self._packet_pages, packets, granules))

    def close(self) -> bytes:
        """An empty EOS page ending the stream; b"" if already closed.

        An empty page rather than the flag on the last audio page: setting the
        flag there would mean holding every packet back until the next arrives.
        Its granule is -1 because no packet completes on it (RFC 3533 §6);
        ``opusinfo`` warns about a positive one.
        """
        if not self._started:
            raise LocalProtocolError("close() before headers(): the stream never began")
        if self._closed:
            return b""
        self._closed = True
        return self._page(FLAG_EOS, -1, [], b"")

    def _check_writable(self) -> None:
        if not self._started:
            raise LocalProtocolError("write_packet() before headers(): the BOS page must lead")
        if self._closed:
            raise LocalProtocolError("write_packet() after close()")

    def _packet_pages(self, packet: bytes, granule: int) -> bytes:
        laces = lacing(len(packet))
        if len(laces) <= MAX_SEGMENTS:  # the common case: one page
            return self._page(0, granule, laces, packet)
        out = bytearray()
        flags, offset = 0, 0
        while laces:
            chunk, laces = laces[:MAX_SEGMENTS], laces[MAX_SEGMENTS:]
            size = sum(chunk)
            # -1: no packet finishes on this page (RFC 3533 §6).
            out += self._page(flags, granule if not laces else -1, chunk, packet[offset:][:size])
            flags, offset = FLAG_CONTINUED, offset + size
        return bytes(out)

    def _page(self, flags: int, granule: int, laces: list[int], body: bytes) -> bytes:
        page = OggPage(flags, granule, self._serial, self._sequence, tuple(laces), body)
        self._sequence += 1
        return page.to_bytes()


# -- reading ------------------------------------------------------------------


class OggPageReader:
    """Incremental page parser: bytes in any split, complete checked pages out."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._error: OggError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete page: at most one page (~64 KiB) plus 3."""
        return len(self._buffer)

    def push(self, data: bytes) -> list[OggPage]:
        """Feed bytes; returns the pages they complete. Raises only :class:`OggError`."""
        if self._error is not None:
            raise self._error
        self._buffer += data
        pages: list[OggPage] = []
        try:
            while (page := self._next_page()) is not None:
                pages.append(page)
        except OggError as exc:
            # Sticky: the stream is corrupt; pages parsed in this push are lost with it.
            self._error = exc
            self._buffer.clear()
            raise
        return pages

    def _next_page(self) -> OggPage | None:
        buf = self._buffer
        start = buf.find(CAPTURE)
        if start < 0:
            # Junk: keep only a tail that could be the start of a capture pattern,
            # so memory stays bounded whatever the peer sends.
            del buf[: max(0, len(buf) - (len(CAPTURE) - 1))]
            return None
        del buf[:start]
        if len(buf) < HEADER_SIZE:
            return None
        _, version, flags, granule, serial, sequence, crc, count = _HEADER.unpack_from(buf)
        if version != 0:
            raise OggError(f"unsupported Ogg stream structure version {version}")
        if flags & ~(FLAG_CONTINUED | FLAG_BOS | FLAG_EOS):
            raise OggError(f"undefined Ogg header_type bits 0x{flags:02x}")
        if len(buf) < HEADER_SIZE + count:
            return None
        segments = tuple(buf[HEADER_SIZE : HEADER_SIZE + count])
        end = HEADER_SIZE + count + sum(segments)
        if len(buf) < end:
            return None
        raw = bytearray(buf[:end])
        raw[_CRC_OFFSET : _CRC_OFFSET + 4] = b"\0\0\0\0"
        if ogg_crc32(bytes(raw)) != crc:
            raise OggError(f"Ogg page {sequence} of stream {serial:#x} fails its CRC")
        body = bytes(buf[HEADER_SIZE + count : end])
        del buf[:end]
        return OggPage(flags, granule, serial, sequence, segments, body)


class _PacketAssembler:
    """Joins lacing segments into packets across pages (RFC 3533 §5-6).

    A packet cut by a lost page, a sequence gap or a serial change is dropped,
    and so are the leading segments of a continued page with nothing to join.
    """

    def __init__(self) -> None:
        self._partial: bytearray | None = None
        self._serial: int | None = None
        self._next_sequence: int | None = None

    def feed(self, page: OggPage) -> list[bytes]:
        joined = (
            self._partial is not None
            and page.continued
            and page.serial == self._serial
            and page.sequence == self._next_sequence
        )
        current: bytearray | None = self._partial if joined else None
        skipping = page.continued and not joined
        self._serial, self._next_sequence = page.serial, (page.sequence + 1) & 0xFFFFFFFF
        packets: list[bytes] = []
        offset = 0
        for lace in page.segments:
            piece = page.body[offset : offset + lace]
            offset += lace
            if skipping:
                skipping = lace == 255
                continue
            current = bytearray(piece) if current is None else current + piece
            if lace < 255:
                packets.append(bytes(current))
                current = None
        self._partial = current
        return packets


class OggPacketReader:
    """Incremental packet reader: bytes in any split, complete packets out."""

    def __init__(self) -> None:
        self._pages = OggPageReader()
        self._assembler = _PacketAssembler()

    def push(self, data: bytes) -> list[bytes]:
        packets: list[bytes] = []
        for page in self._pages.push(data):
            packets += self._assembler.feed(page)
        return packets


class OggOpusReader:
    """Incremental Ogg Opus reader: parses OpusHead, skips OpusTags, yields audio packets.

    A new BOS page (a chained stream, e.g. a restarted peer encoder) starts over
    with a new OpusHead.
    """

    def __init__(self) -> None:
        self._pages = OggPageReader()
        self._assembler = _PacketAssembler()
        self.head: OpusHead | None = None
        self._expect = "head"  # "head" -> "tags" -> "audio"
        self._error: OggError | None = None

    def push(self, data: bytes) -> list[bytes]:
        """Feed bytes; returns the audio packets they complete. Raises only OggError."""
        if self._error is not None:
            raise self._error
        try:
            return self._push(data)
        except OggError as exc:
            self._error = exc  # sticky, like the page reader
            raise

    def _push(self, data: bytes) -> list[bytes]:
        audio: list[bytes] = []
        for page in self._pages.push(data):
            if page.bos:
                self._assembler = _PacketAssembler()
                self._expect = "head"
            for packet in self._assembler.feed(page):
                if self._expect == "audio":
                    audio.append(packet)
                elif self._expect == "head":
                    self.head = parse_opus_head(packet)
                    self._expect = "tags"
                else:
                    if not packet.startswith(OPUS_TAGS_MAGIC):
                        raise OggError("the second packet of the stream is not OpusTags")
                    self._expect = "audio"
        return audio
