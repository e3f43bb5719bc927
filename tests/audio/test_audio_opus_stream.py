"""OggOpusEncodeStream / OggOpusDecodeStream: what the model clients use."""

from __future__ import annotations

import opuslib
import opuslib.api.encoder
import pytest

from phonebridge.audio.analysis import aligned_snr_db, samples, tone
from phonebridge.audio.ogg import OggOpusWriter, OggPageReader
from phonebridge.audio.opus_stream import OggOpusDecodeStream, OggOpusEncodeStream
from phonebridge.errors import AudioError, LocalProtocolError, OggError, OpusError


def encode_all(pcm: bytes, chunk: int = 960, serial: int | None = 3) -> bytes:
    stream = OggOpusEncodeStream(serial=serial)
    out = stream.headers()
    out += b"".join(stream.push(pcm[i : i + chunk]) for i in range(0, len(pcm), chunk))
    return out + stream.close()


def test_headers_once_then_one_page_per_20ms() -> None:
    stream = OggOpusEncodeStream(serial=42)
    headers = stream.headers()
    with pytest.raises(LocalProtocolError):
        stream.headers()
    pages = OggPageReader().push(headers)
    assert [p.bos for p in pages] == [True, False]
    reader = OggPageReader()
    assert stream.push(bytes(500)) == b""  # not yet 20 ms
    assert len(reader.push(stream.push(bytes(460)))) == 1
    assert len(reader.push(stream.push(bytes(960 * 3)))) == 3
    eos = reader.push(stream.close())
    assert len(eos) == 1
    assert eos[0].eos
    assert {p.serial for p in pages} == {42}


def test_packets_per_page_groups_frames_and_close_flushes_the_rest() -> None:
    stream = OggOpusEncodeStream(serial=43, packets_per_page=4)
    reader = OggPageReader()
    reader.push(stream.headers())
    assert stream.push(bytes(960 * 3)) == b""  # three packets wait for the fourth
    (page,) = reader.push(stream.push(bytes(960 * 2)))
    assert len(page.segments) == 4
    assert page.granule_position == 4 * 960
    tail = reader.push(stream.close())  # the fifth packet, then EOS
    assert [len(p.segments) for p in tail] == [1, 0]
    assert tail[0].granule_position == 5 * 960
    assert tail[1].eos
    with pytest.raises(ValueError, match="packets_per_page"):
        OggOpusEncodeStream(packets_per_page=0)


def test_push_before_headers_is_a_bug() -> None:
    with pytest.raises(LocalProtocolError):
        OggOpusEncodeStream().push(bytes(960))


def test_serials_are_random_unless_given() -> None:
    serials = {OggOpusEncodeStream().serial for _ in range(4)}
    assert len(serials) > 1
    assert OggOpusEncodeStream(serial=7).serial == 7


def test_round_trip_through_ogg_split_anyhow() -> None:
    pcm = tone(440, 1.0, 24000, amplitude=8000)
    data = encode_all(pcm, chunk=700)
    decoder = OggOpusDecodeStream()
    out = b"".join(decoder.push(data[i : i + 13]) for i in range(0, len(data), 13))
    assert decoder.head is not None
    assert decoder.head.pre_skip == 312
    assert len(out) == len(pcm)  # every complete 20 ms frame, pre-skip kept
    best = aligned_snr_db(samples(pcm), samples(out), range(140, 180), edge=2400)
    assert best > 25


def test_trim_pre_skip() -> None:
    pcm = tone(440, 0.2, 24000)
    data = encode_all(pcm)
    trimmed = OggOpusDecodeStream(trim_pre_skip=True)
    # Feed one page at a time so the trim spans pushes.
    pages = OggPageReader().push(data)
    out = b"".join(trimmed.push(page.to_bytes()) for page in pages)
    assert len(out) == len(pcm) - 312  # 156 samples at 24 kHz, two bytes each
    assert out == OggOpusDecodeStream().push(data)[312:]


def test_decodes_80ms_packets_like_the_server_sends() -> None:
    state = opuslib.api.encoder.create_state(24000, 1, opuslib.APPLICATION_VOIP)
    try:
        pcm = tone(300, 0.08, 24000)
        packets = [bytes(opuslib.api.encoder.encode(state, pcm, 1920, 4000)) for _ in range(3)]
    finally:
        opuslib.api.encoder.destroy(state)
    writer = OggOpusWriter(serial=1, pre_skip=3840)
    data = writer.headers() + b"".join(writer.write_packet(p) for p in packets)
    decoder = OggOpusDecodeStream()
    pages = OggPageReader().push(data)
    assert decoder.push(b"".join(p.to_bytes() for p in pages[:2])) == b""
    for page in pages[2:]:
        assert len(decoder.push(page.to_bytes())) == 2 * 1920  # one page -> one 80 ms block


def test_corrupt_input_raises_audio_errors() -> None:
    writer = OggOpusWriter(serial=1, pre_skip=312)
    not_opus = writer.headers() + writer.write_packet(bytes([31 << 3 | 2]))  # no frame lengths
    with pytest.raises(OpusError):
        OggOpusDecodeStream().push(not_opus)
    with pytest.raises(OggError):
        OggOpusDecodeStream().push(b"OggS\x01" + bytes(40))
    assert issubclass(OggError, AudioError)
    assert issubclass(OpusError, AudioError)
