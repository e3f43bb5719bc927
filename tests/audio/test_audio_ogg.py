"""Ogg pages and Ogg Opus: CRC, writer, incremental readers, robustness."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonebridge.audio.ogg import (
    FLAG_BOS,
    FLAG_CONTINUED,
    FLAG_EOS,
    OggOpusReader,
    OggOpusWriter,
    OggPacketReader,
    OggPage,
    OggPageReader,
    OpusHead,
    ogg_crc32,
    opus_tags,
    parse_opus_head,
)
from phonebridge.errors import LocalProtocolError, OggError

# -- CRC ----------------------------------------------------------------------


def reference_crc(data: bytes) -> int:
    """Bit-by-bit MSB-first CRC-32, poly 0x04C11DB7, init 0, no final xor (RFC 3533 §6)."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def test_crc_check_value() -> None:
    # CRC-32/CKSUM's check value is 0x765E7680 with a final xor; Ogg has none.
    assert ogg_crc32(b"123456789") == 0x765E7680 ^ 0xFFFFFFFF
    assert ogg_crc32(b"") == 0


@given(st.binary(max_size=300))
def test_crc_matches_the_bitwise_definition(data: bytes) -> None:
    assert ogg_crc32(data) == reference_crc(data)


# -- test streams -------------------------------------------------------------


# Valid 20 ms TOC bytes (CELT fullband 20 ms, code 0) followed by payload bytes:
# the Ogg layer only reads the TOC, so these stand in for real packets.
def fake_packet(size: int, fill: int = 0x55) -> bytes:
    return bytes([31 << 3]) + bytes([fill]) * (size - 1)


def write_stream(packets: list[bytes], serial: int = 0x1234) -> bytes:
    writer = OggOpusWriter(serial=serial, pre_skip=312)
    return writer.headers() + b"".join(writer.write_packet(p) for p in packets) + writer.close()


PACKETS = [fake_packet(n, i) for i, n in enumerate([1, 60, 254, 255, 256, 510, 700, 3])]
STREAM = write_stream(PACKETS)


def pages_of(data: bytes) -> list[OggPage]:
    return OggPageReader().push(data)


# -- writer -------------------------------------------------------------------


def test_header_pages() -> None:
    writer = OggOpusWriter(serial=77, pre_skip=312, vendor="unit test")
    head_page, tags_page = pages_of(writer.headers())
    assert head_page.bos
    assert not head_page.eos
    assert not head_page.continued
    assert (head_page.sequence, head_page.granule_position, head_page.serial) == (0, 0, 77)
    assert parse_opus_head(head_page.body) == OpusHead(1, 1, 312, 24000, 0, 0)
    assert head_page.body == b"OpusHead\x01\x01" + struct.pack("<HIhB", 312, 24000, 0, 0)
    assert tags_page.header_type == 0
    assert (tags_page.sequence, tags_page.granule_position) == (1, 0)
    assert tags_page.body == opus_tags("unit test")
    assert tags_page.body == b"OpusTags\x09\0\0\0unit test\0\0\0\0"


def test_headers_only_once() -> None:
    writer = OggOpusWriter(serial=1, pre_skip=312)
    writer.headers()
    with pytest.raises(LocalProtocolError):
        writer.headers()  # a second BOS would kill a PersonaPlex session


def test_one_page_per_packet_with_48k_granules_and_sequence_numbers() -> None:
    pages = pages_of(STREAM)
    audio = pages[2:-1]
    assert len(audio) == len(PACKETS)
    assert [p.sequence for p in pages] == list(range(len(pages)))
    assert [p.granule_position for p in audio] == [960 * (i + 1) for i in range(len(PACKETS))]
    assert all(p.header_type == 0 for p in audio)
    assert [p.body for p in audio] == PACKETS
    # A packet of exactly 255 bytes needs a terminating zero lacing value.
    assert audio[3].segments == (255, 0)
    assert audio[5].segments == (255, 255, 0)


def test_eos_page() -> None:
    eos = pages_of(STREAM)[-1]
    assert eos.eos
    assert not eos.bos
    assert eos.segments == ()
    assert eos.body == b""
    assert eos.granule_position == -1  # no packet completes on it (RFC 3533 §6)


def test_writer_misuse() -> None:
    writer = OggOpusWriter(serial=1, pre_skip=312)
    with pytest.raises(LocalProtocolError):
        writer.write_packet(fake_packet(10))
    with pytest.raises(LocalProtocolError):
        writer.close()
    writer.headers()
    with pytest.raises(LocalProtocolError):
        writer.write_packet(b"")  # not an Opus packet: no TOC
    assert writer.close()
    assert writer.close() == b""  # idempotent
    with pytest.raises(LocalProtocolError):
        writer.write_packet(fake_packet(10))


def test_a_packet_larger_than_a_page_spans_pages() -> None:
    big = fake_packet(255 * 255 + 1000)
    writer = OggOpusWriter(serial=5, pre_skip=312)
    data = writer.headers() + writer.write_packet(big) + writer.write_packet(fake_packet(9))
    pages = pages_of(data)[2:]
    assert len(pages) == 3
    assert pages[0].granule_position == -1
    assert not pages[0].continued
    assert len(pages[0].segments) == 255
    assert pages[1].continued
    assert pages[1].granule_position == 960
    assert pages[2].granule_position == 1920
    assert OggPacketReader().push(data)[2:] == [big, fake_packet(9)]


def test_several_packets_share_a_page_when_their_lacing_fits() -> None:
    writer = OggOpusWriter(serial=6, pre_skip=312)
    packets = [fake_packet(60), fake_packet(255), fake_packet(61), fake_packet(62)]
    data = writer.headers() + writer.write_packets(packets)
    (page,) = pages_of(data)[2:]
    assert page.segments == (60, 255, 0, 61, 62)
    assert page.granule_position == 4 * 960  # the end of its last packet
    assert OggPacketReader().push(data)[2:] == packets


def test_packets_whose_lacing_overflows_a_page_get_a_page_each() -> None:
    writer = OggOpusWriter(serial=7, pre_skip=312)
    packets = [fake_packet(255 * 200), fake_packet(255 * 100)]  # 201 + 101 segments
    data = writer.headers() + writer.write_packets(packets)
    pages = pages_of(data)[2:]
    assert [p.granule_position for p in pages] == [960, 1920]
    assert OggPacketReader().push(data)[2:] == packets


# -- page reader -----------------------------------------------------------------


def test_reads_every_page_whatever_the_split() -> None:
    whole = pages_of(STREAM)
    for offset in range(len(STREAM) + 1):
        reader = OggPageReader()
        assert reader.push(STREAM[:offset]) + reader.push(STREAM[offset:]) == whole


def test_byte_by_byte() -> None:
    reader = OggPageReader()
    pages = [page for i in range(len(STREAM)) for page in reader.push(STREAM[i : i + 1])]
    assert pages == pages_of(STREAM)


def test_every_truncated_prefix_yields_a_prefix_of_the_pages() -> None:
    whole = pages_of(STREAM)
    for end in range(len(STREAM)):
        got = OggPageReader().push(STREAM[:end])
        assert got == whole[: len(got)]


def test_page_round_trips_through_bytes() -> None:
    for page in pages_of(STREAM):
        assert pages_of(page.to_bytes()) == [page]


@settings(max_examples=50)
@given(st.lists(st.binary(max_size=40).filter(lambda junk: b"O" not in junk), max_size=12))
def test_junk_between_pages_is_skipped(junks: list[bytes]) -> None:
    pages = pages_of(STREAM)
    raw = [page.to_bytes() for page in pages]
    junks = (junks + [b""] * len(raw))[: len(raw)]
    mixed = b"".join(junk + page for junk, page in zip(junks, raw, strict=True))
    assert pages_of(mixed) == pages


def test_junk_memory_is_bounded() -> None:
    reader = OggPageReader()
    for _ in range(100):
        assert reader.push(b"x" * 10_000 + b"Ogg") == []
        assert reader.buffered <= 3
    assert reader.push(b"S") == []  # the split capture pattern was kept
    assert reader.buffered == 4


def test_bad_crc_raises_and_stays_failed() -> None:
    corrupt = bytearray(STREAM)
    corrupt[-len(pages_of(STREAM)[-2].to_bytes()) - 30] ^= 0x01  # inside an audio page
    reader = OggPageReader()
    with pytest.raises(OggError, match="CRC"):
        reader.push(bytes(corrupt))
    with pytest.raises(OggError):
        reader.push(STREAM)  # the stream is corrupt: no silent resync after a bad page


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [(4, 1, "version"), (5, 0x08, "header_type")],
)
def test_malformed_page_header_raises(offset: int, value: int, message: str) -> None:
    page = bytearray(STREAM[:200])
    page[offset] = value
    with pytest.raises(OggError, match=message):
        OggPageReader().push(bytes(page))


@given(st.binary(max_size=400))
def test_any_bytes_give_pages_or_ogg_error(data: bytes) -> None:
    for reader in (OggPageReader(), OggPacketReader(), OggOpusReader()):
        with contextlib.suppress(OggError):
            reader.push(data)


@settings(max_examples=200)
@given(st.integers(0, len(STREAM) - 1), st.integers(1, 255), st.binary(max_size=20))
def test_corrupted_streams_give_packets_or_ogg_error(
    position: int, flip: int, extra: bytes
) -> None:
    data = bytearray(STREAM)
    data[position] ^= flip
    data[position:position] = extra
    for reader in (OggPacketReader(), OggOpusReader()):
        try:
            for i in range(0, len(data), 97):
                reader.push(bytes(data[i : i + 97]))
        except OggError:
            pass


# -- packet reader ------------------------------------------------------------------


def test_packets_come_back_whatever_the_split() -> None:
    expected = [OpusHead(1, 1, 312, 24000, 0, 0).to_bytes(), opus_tags("phonebridge"), *PACKETS]
    for offset in range(0, len(STREAM) + 1, 7):
        reader = OggPacketReader()
        assert reader.push(STREAM[:offset]) + reader.push(STREAM[offset:]) == expected


def page(flags: int, sequence: int, segments: list[int], body: bytes, serial: int = 1) -> bytes:
    return OggPage(flags, 0, serial, sequence, tuple(segments), body).to_bytes()


def test_packets_spanning_pages_with_several_packets_per_page() -> None:
    data = (
        page(FLAG_BOS, 0, [3, 255], b"abc" + b"x" * 255)
        + page(FLAG_CONTINUED, 1, [255], b"y" * 255)
        + page(FLAG_CONTINUED, 2, [10, 2], b"z" * 10 + b"ok")
    )
    assert OggPacketReader().push(data) == [b"abc", b"x" * 255 + b"y" * 255 + b"z" * 10, b"ok"]


def test_continuation_without_a_start_is_dropped() -> None:
    # The stream was joined mid-packet: its tail is skipped, the rest is read.
    data = page(FLAG_CONTINUED, 9, [255, 4, 2], b"t" * 259 + b"ok")
    assert OggPacketReader().push(data) == [b"ok"]


def test_lost_page_drops_the_cut_packet() -> None:
    data = page(0, 0, [255], b"a" * 255) + page(FLAG_CONTINUED, 2, [1, 2], b"b" + b"ok")
    assert OggPacketReader().push(data) == [b"ok"]


def test_serial_change_drops_the_cut_packet() -> None:
    data = page(0, 0, [255], b"a" * 255) + page(FLAG_CONTINUED, 1, [1, 2], b"bok", serial=2)
    assert OggPacketReader().push(data) == [b"ok"]


def test_unfinished_packet_is_dropped_when_a_fresh_page_follows() -> None:
    data = page(0, 0, [255], b"a" * 255) + page(0, 1, [2], b"ok")
    assert OggPacketReader().push(data) == [b"ok"]


# -- Opus layer -------------------------------------------------------------------


def test_opus_reader_parses_head_and_skips_tags() -> None:
    reader = OggOpusReader()
    assert reader.head is None
    assert reader.push(STREAM) == PACKETS
    assert reader.head == OpusHead(1, 1, 312, 24000, 0, 0)


def test_opus_reader_tolerates_the_personaplex_server_quirks() -> None:
    # sphn 0.1/0.2 (PROTOCOLS.md §2.4): pre-skip 3840, input rate 48000,
    # granules in 24 kHz samples, 40 or 80 ms packets.
    head = OpusHead(1, 1, 3840, 48000, 0, 0).to_bytes()
    packets = [bytes([31 << 3 | 1]) + b"\x11" * 30, bytes([31 << 3 | 3, 4]) + b"\x22" * 50]
    data = (
        page(FLAG_BOS, 0, [19], head, serial=9)
        + page(0, 1, [len(opus_tags("sphn"))], opus_tags("sphn"), serial=9)
        + OggPage(0, 1920, 9, 2, (31,), packets[0]).to_bytes()
        + OggPage(0, 3840, 9, 3, (52,), packets[1]).to_bytes()
    )
    reader = OggOpusReader()
    assert reader.push(data) == packets
    assert reader.head is not None
    assert reader.head.pre_skip == 3840


def test_opus_reader_restarts_on_a_new_bos() -> None:
    second = write_stream([fake_packet(5)], serial=99)
    reader = OggOpusReader()
    assert reader.push(STREAM + second) == [*PACKETS, fake_packet(5)]


def test_opus_reader_needs_opus_head_then_tags() -> None:
    not_opus = page(FLAG_BOS, 0, [8], b"Speex   ")
    reader = OggOpusReader()
    with pytest.raises(OggError, match="OpusHead"):
        reader.push(not_opus)
    with pytest.raises(OggError):
        reader.push(STREAM)  # sticky
    head = OpusHead(1, 1, 312, 24000, 0, 0).to_bytes()
    no_tags = page(FLAG_BOS, 0, [19], head) + page(0, 1, [5], b"audio")
    with pytest.raises(OggError, match="OpusTags"):
        OggOpusReader().push(no_tags)


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (b"OpusHead\x01\x01", "not an OpusHead"),
        (b"OpusHeaX" + bytes(11), "not an OpusHead"),
        (OpusHead(0x10, 1, 0, 0, 0, 0).to_bytes(), "version"),
        (OpusHead(1, 0, 0, 0, 0, 0).to_bytes(), "zero channels"),
        (OpusHead(1, 3, 0, 0, 0, 0).to_bytes(), "1 or 2 channels"),
        (OpusHead(1, 3, 0, 0, 0, 1).to_bytes(), "mapping table"),
    ],
)
def test_parse_opus_head_refuses(packet: bytes, message: str) -> None:
    with pytest.raises(OggError, match=message):
        parse_opus_head(packet)


def test_parse_opus_head_accepts_minor_versions_and_mapping_tables() -> None:
    assert parse_opus_head(OpusHead(0x0F, 2, 1, 2, -3, 0).to_bytes()).output_gain == -3
    surround = OpusHead(1, 3, 312, 48000, 0, 1).to_bytes() + bytes([2, 1, 0, 1, 2])
    assert parse_opus_head(surround).mapping_family == 1


def test_page_flags() -> None:
    flags = OggPage(FLAG_BOS | FLAG_EOS | FLAG_CONTINUED, 0, 0, 0, (), b"")
    assert flags.bos
    assert flags.eos
    assert flags.continued
