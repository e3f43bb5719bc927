"""Fuzzing the Ogg readers and the Ogg Opus decode stream past their CRC check.

tests/audio/test_audio_ogg.py feeds random bytes and randomly corrupted
streams; nearly all of those stop at the capture pattern or the CRC. Here
every page is re-serialised with a *correct* CRC, so the fuzzer reaches what
lies behind it: undefined header bits, granules and serials at their limits,
lacing tables that disagree with the body length, continuation flags with
nothing to continue, OpusHead/OpusTags packets with hostile fields, and audio
packets libopus must refuse. Pages are also truncated and split anyhow.

The property (RFC 3533 §6, RFC 7845 §5): the page and packet readers return
results or raise :class:`OggError`; the decode stream raises only
:class:`AudioError` (OggError or OpusError); nothing else, ever.
"""

from __future__ import annotations

import itertools
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from phonebridge.audio.ogg import (
    FLAG_BOS,
    MAX_SEGMENTS,
    OggOpusReader,
    OggOpusWriter,
    OggPacketReader,
    OggPage,
    OggPageReader,
    OpusHead,
    opus_tags,
)
from phonebridge.audio.opus_stream import OggOpusDecodeStream
from phonebridge.errors import AudioError, LocalProtocolError, OggError

from .hostile import FUZZ_SETTINGS

int64 = st.integers(-(2**63), 2**63 - 1)
uint32 = st.integers(0, 2**32 - 1)


@st.composite
def pages(draw: st.DrawFn, bodies: st.SearchStrategy[bytes] | None = None) -> bytes:
    """One page with a valid CRC whose fields are anything the header can hold."""
    body = draw(bodies if bodies is not None else st.binary(max_size=600))
    honest = draw(st.booleans())
    if honest:
        segments = [255] * (len(body) // 255) + [len(body) % 255]
        segments = segments[:MAX_SEGMENTS]
    else:  # a lacing table that disagrees with the body: too long, too short, or random
        segments = draw(st.lists(st.integers(0, 255), max_size=MAX_SEGMENTS))
    page = OggPage(
        header_type=draw(st.integers(0, 7) | st.integers(0, 255)),
        granule_position=draw(int64),
        serial=draw(st.sampled_from([0, 1]) | uint32),
        sequence=draw(st.sampled_from([0, 1, 2, 2**32 - 1]) | uint32),
        segments=tuple(segments),
        body=body,
    )
    return page.to_bytes()


@st.composite
def split_anyhow(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def head_packet(
    version: int, channels: int, pre_skip: int, rate: int, gain: int, family: int, tail: bytes
) -> bytes:
    return struct.pack(
        "<8sBBHIhB", b"OpusHead", version, channels, pre_skip, rate, gain, family
    ) + (tail)


opus_heads = st.builds(
    head_packet,
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 65535),
    uint32,
    st.integers(-32768, 32767),
    st.integers(0, 255),
    st.binary(max_size=8),
)
# TOC bytes of every config and frame-count code, then anything (RFC 6716 §3.1).
opus_packets = st.builds(
    lambda toc, rest: bytes([toc]) + rest, st.integers(0, 255), st.binary(max_size=80)
)
any_packet = opus_packets | st.binary(max_size=40) | opus_heads | st.just(opus_tags("x"))


def stream_of(packets: list[bytes]) -> bytes:
    """The packets as honest pages (head and tags first), whatever the packets hold."""
    out = b""
    for sequence, packet in enumerate(packets):
        laces = [255] * (len(packet) // 255) + [len(packet) % 255]
        flags = FLAG_BOS if sequence == 0 else 0
        out += OggPage(flags, 0, 7, sequence, tuple(laces), packet).to_bytes()
    return out


def feed_page_readers(chunks: list[bytes]) -> None:
    for reader in (OggPageReader(), OggPacketReader(), OggOpusReader()):
        try:
            for chunk in chunks:
                reader.push(chunk)
        except OggError:
            pass


@settings(**FUZZ_SETTINGS)
@given(data=st.lists(pages(), min_size=1, max_size=5).map(b"".join), split=st.data())
def test_pages_with_valid_crcs_and_any_fields(data: bytes, split: st.DataObject) -> None:
    feed_page_readers(split.draw(split_anyhow(data)))


@settings(**FUZZ_SETTINGS)
@given(data=st.lists(pages(), min_size=1, max_size=4).map(b"".join), cut=st.data())
def test_truncated_pages_yield_a_prefix_or_ogg_error(data: bytes, cut: st.DataObject) -> None:
    end = cut.draw(st.integers(0, len(data)))
    feed_page_readers([data[:end]])
    # Truncated in the middle, then a fresh valid page: the reader resyncs or fails cleanly.
    feed_page_readers([data[:end] + OggPage(0, 0, 1, 0, (3,), b"abc").to_bytes()])


@settings(**FUZZ_SETTINGS)
@given(
    head=st.just(OpusHead(1, 1, 312, 24000, 0, 0).to_bytes()) | opus_heads | st.binary(max_size=30),
    packets=st.lists(any_packet, max_size=6),
    split=st.data(),
)
def test_decode_stream_raises_only_audio_errors(
    head: bytes, packets: list[bytes], split: st.DataObject
) -> None:
    data = stream_of([head, opus_tags("fuzz"), *packets])
    for trim in (False, True):
        stream = OggOpusDecodeStream(trim_pre_skip=trim)
        try:
            for chunk in split.draw(split_anyhow(data)):
                pcm = stream.push(chunk)
                assert len(pcm) % 2 == 0  # whole 16-bit samples, whatever came in
        except AudioError:
            pass


@settings(**FUZZ_SETTINGS)
@given(packets=st.lists(opus_packets, min_size=1, max_size=8))
def test_writer_output_with_hostile_packets_reads_back(packets: list[bytes]) -> None:
    # Our own writer refuses packets it cannot time; whatever it accepts must read back.
    writer = OggOpusWriter(serial=3, pre_skip=312)
    data = writer.headers()
    written: list[bytes] = []
    for packet in packets:
        try:
            data += writer.write_packet(packet)
        except LocalProtocolError:
            continue
        written.append(packet)
    assert OggOpusReader().push(data) == written
