"""G.711 mu-law: bit-exact against an independent reference, round trips."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phonebridge.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from phonebridge.errors import AudioError

# -- the reference: Sun Microsystems g711.c, written out sample by sample -----

BIAS = 0x84
CLIP = 32635
EXPONENT_OF = [0] * 256
for _i in range(1, 256):
    EXPONENT_OF[_i] = _i.bit_length() - 1  # position of the top bit: the segment


def reference_encode(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sample < 0 else sample, CLIP) + BIAS
    exponent = EXPONENT_OF[(magnitude >> 7) & 0xFF]
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def reference_decode(code: int) -> int:
    code = ~code & 0xFF
    exponent = (code >> 4) & 0x07
    magnitude = (((code & 0x0F) << 3) + BIAS) << exponent
    return BIAS - magnitude if code & 0x80 else magnitude - BIAS


ALL_SAMPLES = range(-32768, 32768)


def test_encode_is_bit_exact_for_all_65536_samples() -> None:
    pcm = struct.pack(f"<{len(ALL_SAMPLES)}h", *ALL_SAMPLES)
    expected = bytes(reference_encode(s) for s in ALL_SAMPLES)
    assert pcm16_to_ulaw(pcm) == expected


def test_decode_is_bit_exact_for_all_256_codes() -> None:
    decoded = struct.unpack("<256h", ulaw_to_pcm16(bytes(range(256))))
    assert list(decoded) == [reference_decode(code) for code in range(256)]


def test_reference_spot_values() -> None:
    # Guards the reference itself: well-known points of the mu-law curve.
    assert reference_encode(0) == 0xFF
    assert reference_encode(-1) == 0x7F
    assert reference_encode(32767) == 0x80
    assert reference_encode(-32768) == 0x00
    assert reference_decode(0x80) == 32124
    assert reference_decode(0x00) == -32124


def test_every_code_round_trips() -> None:
    # mu-law has two zeros: 0x7F (-0) decodes to 0, which encodes as 0xFF (+0).
    codes = bytes(range(256))
    expected = codes.replace(b"\x7f", b"\xff")
    assert pcm16_to_ulaw(ulaw_to_pcm16(codes)) == expected


@given(st.binary())
def test_decoded_values_are_fixed_points(codes: bytes) -> None:
    pcm = ulaw_to_pcm16(codes)
    assert len(pcm) == 2 * len(codes)
    assert ulaw_to_pcm16(pcm16_to_ulaw(pcm)) == pcm


@given(st.lists(st.integers(-32768, 32767), max_size=200))
def test_quantisation_error_is_within_half_a_step(values: list[int]) -> None:
    pcm = struct.pack(f"<{len(values)}h", *values)
    decoded = struct.unpack(f"<{len(values)}h", ulaw_to_pcm16(pcm16_to_ulaw(pcm)))
    for value, back in zip(values, decoded, strict=True):
        # The largest step is 1024 (top segment); clipping adds up to 643 at the ends.
        assert abs(value - back) <= max(abs(value) // 32 + 16, 643 if abs(value) > 32124 else 0)


def test_odd_length_pcm_is_refused() -> None:
    with pytest.raises(AudioError):
        pcm16_to_ulaw(b"\x00\x01\x02")
