"""Opus codec on libopus: encoder settings, any packet duration, TOC parsing."""

from __future__ import annotations

import ctypes
import ctypes.util

import opuslib
import opuslib.api.encoder
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phonebridge.audio.analysis import aligned_snr_db, samples, tone
from phonebridge.audio.opus import (
    DEFAULT_BITRATE,
    DEFAULT_COMPLEXITY,
    DEFAULT_MAX_BANDWIDTH,
    NARROWBAND,
    OpusDecoder,
    OpusEncoder,
    packet_samples_48k,
)
from phonebridge.errors import OpusError

# A private handle on libopus, so setting argtypes here cannot touch opuslib's.
_libopus = ctypes.CDLL(ctypes.util.find_library("opus"))
_libopus.opus_packet_get_nb_samples.argtypes = (ctypes.c_char_p, ctypes.c_int32, ctypes.c_int32)
_libopus.opus_packet_get_nb_samples.restype = ctypes.c_int


def libopus_packet_samples(packet: bytes) -> int:
    return int(_libopus.opus_packet_get_nb_samples(packet, len(packet), 48000))


def encode_with_duration(ms: float, rate: int = 24000) -> bytes:
    """One packet of ``ms`` via libopus directly (our encoder only does 20 ms)."""
    state = opuslib.api.encoder.create_state(rate, 1, opuslib.APPLICATION_AUDIO)
    try:
        frame = int(rate * ms / 1000)
        pcm = tone(440, frame / rate, rate)
        return bytes(opuslib.api.encoder.encode(state, pcm, frame, 8000))
    finally:
        opuslib.api.encoder.destroy(state)


def test_defaults_are_the_documented_choice() -> None:
    assert DEFAULT_COMPLEXITY == 1
    assert DEFAULT_BITRATE == 32_000


def _toc_config(packet: bytes) -> int:
    return packet[0] >> 3  # RFC 6716 §3.1


# TOC configs that code narrowband (RFC 6716 §3.1 table 2): SILK NB, CELT NB.
_NARROWBAND_CONFIGS = frozenset({0, 1, 2, 3, 16, 17, 18, 19})


def test_the_phone_line_is_coded_as_narrowband_by_default() -> None:
    assert DEFAULT_MAX_BANDWIDTH == NARROWBAND
    pcm = tone(440, 0.2, 24000)
    encoder = OpusEncoder()
    configs = {_toc_config(encoder.encode(pcm[i : i + 960])) for i in range(0, len(pcm), 960)}
    assert configs <= _NARROWBAND_CONFIGS


def test_without_a_bandwidth_cap_libopus_codes_the_full_band() -> None:
    pcm = tone(440, 0.2, 24000)
    encoder = OpusEncoder(max_bandwidth=None)
    configs = {_toc_config(encoder.encode(pcm[i : i + 960])) for i in range(0, len(pcm), 960)}
    assert not configs & _NARROWBAND_CONFIGS


def test_encoder_lookahead_is_the_opushead_pre_skip() -> None:
    assert OpusEncoder().lookahead_48k == 312  # libopus at 24 kHz (AUDIO.md)


@pytest.mark.parametrize(("complexity", "bitrate"), [(0, None), (5, 32_000), (10, 12_000)])
def test_encoder_makes_20ms_packets(complexity: int, bitrate: int | None) -> None:
    encoder = OpusEncoder(complexity=complexity, bitrate=bitrate)
    pcm = tone(440, 0.02, 24000)
    for _ in range(3):
        assert packet_samples_48k(encoder.encode(pcm)) == 960


def test_bitrate_setting_takes_effect() -> None:
    pcm = tone(440, 1.0, 24000)
    sizes = {}
    for bitrate in (12_000, 48_000):
        encoder = OpusEncoder(bitrate=bitrate)
        sizes[bitrate] = sum(len(encoder.encode(pcm[i : i + 960])) for i in range(0, len(pcm), 960))
    assert sizes[48_000] > 2 * sizes[12_000]


def test_encode_decode_round_trip_keeps_a_tone() -> None:
    encoder, decoder = OpusEncoder(), OpusDecoder()
    pcm = tone(440, 1.0, 24000, amplitude=8000)
    out = b"".join(
        decoder.decode(encoder.encode(pcm[i : i + 960])) for i in range(0, len(pcm), 960)
    )
    assert len(out) == len(pcm)
    best = aligned_snr_db(samples(pcm), samples(out), range(140, 180), edge=2400)
    assert best > 25  # measured 33.5 dB at 32 kb/s, complexity 5


@pytest.mark.parametrize("size", [0, 958, 962, 1920])
def test_encoder_takes_exactly_one_20ms_frame(size: int) -> None:
    with pytest.raises(OpusError):
        OpusEncoder().encode(bytes(size))


def test_encoder_refuses_bad_settings() -> None:
    with pytest.raises(OpusError):
        OpusEncoder(complexity=11)
    with pytest.raises(OpusError):
        OpusEncoder(22050)
    with pytest.raises(OpusError):
        OpusDecoder(44100)
    with pytest.raises(OpusError):
        OpusEncoder(bitrate=-5)  # libopus refuses it: OPUS_BAD_ARG


@pytest.mark.parametrize("ms", [2.5, 5, 10, 20, 40, 60, 80, 100, 120])
def test_decoder_takes_any_legal_duration(ms: float) -> None:
    packet = encode_with_duration(ms)
    assert packet_samples_48k(packet) == int(48 * ms)
    assert len(OpusDecoder().decode(packet)) == 2 * int(24 * ms)


def test_decoder_output_rate_is_its_own() -> None:
    packet = encode_with_duration(80)
    assert len(OpusDecoder(48000).decode(packet)) == 2 * 3840
    assert len(OpusDecoder(8000).decode(packet)) == 2 * 640


def test_decoder_refuses_corrupt_and_empty_packets() -> None:
    decoder = OpusDecoder()
    with pytest.raises(OpusError):
        decoder.decode(b"")
    with pytest.raises(OpusError):
        decoder.decode(b"\xff\xff")  # code 3, zero frames


# -- packet durations from the TOC (RFC 6716 §3.1) ---------------------------


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        (bytes([0 << 3 | 0]), 480),  # SILK 10 ms, one frame
        (bytes([3 << 3 | 0]), 2880),  # SILK 60 ms
        (bytes([13 << 3 | 1]), 1920),  # hybrid 20 ms, two frames
        (bytes([16 << 3 | 2, 1]), 240),  # CELT 2.5 ms, two frames
        (bytes([31 << 3 | 3, 6]), 5760),  # CELT 20 ms x 6 = 120 ms
        (bytes([11 << 3 | 3, 2]), 5760),  # SILK 60 ms x 2
    ],
)
def test_packet_samples_from_toc(packet: bytes, expected: int) -> None:
    assert packet_samples_48k(packet) == expected


@pytest.mark.parametrize(
    "packet",
    [b"", bytes([3]), bytes([3, 0]), bytes([31 << 3 | 3, 7]), bytes([3 << 3 | 3, 3])],
    ids=["empty", "code3-no-count", "code3-zero-frames", "140ms", "three-60ms"],
)
def test_packet_samples_refuses_illegal_packets(packet: bytes) -> None:
    with pytest.raises(OpusError):
        packet_samples_48k(packet)


@given(st.binary(max_size=4))
def test_packet_samples_agrees_with_libopus(packet: bytes) -> None:
    oracle = libopus_packet_samples(packet)
    if oracle <= 0:
        with pytest.raises(OpusError):
            packet_samples_48k(packet)
    else:
        assert packet_samples_48k(packet) == oracle
