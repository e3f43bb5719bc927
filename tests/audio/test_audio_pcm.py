"""Byte order, A-law and integer-ratio rate changes (phonebridge.audio.pcm)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phonebridge.audio.pcm import RatioResampler, alaw_to_pcm16, pcm16_to_alaw, swap16
from phonebridge.errors import AudioError


def test_swap16() -> None:
    assert swap16(b"\x01\x02\x03\x04") == b"\x02\x01\x04\x03"
    with pytest.raises(AudioError):
        swap16(b"\x01")


def test_alaw_round_trip_of_all_codes() -> None:
    codes = bytes(range(256))
    assert pcm16_to_alaw(alaw_to_pcm16(codes)) == codes


@given(chunks=st.lists(st.integers(0, 50), max_size=6), factor=st.sampled_from([2, 3]))
def test_chunked_push_equals_one_push(chunks: list[int], factor: int) -> None:
    rng = np.random.default_rng(len(chunks))
    pieces = [rng.integers(-3000, 3000, n).astype("<i2").tobytes() for n in chunks]
    for up in (True, False):
        rates = (8_000, 8_000 * factor) if up else (8_000 * factor, 8_000)
        whole = RatioResampler(*rates).push(b"".join(pieces))
        split = RatioResampler(*rates)
        assert b"".join(split.push(p) for p in pieces) == whole
        total = sum(chunks)
        expected = total * factor if up else total // factor
        assert len(whole) == 2 * expected


def test_upsampling_interpolates_and_downsampling_averages() -> None:
    up = RatioResampler(8_000, 16_000)
    out = np.frombuffer(up.push(np.array([0, 100, 200], "<i2").tobytes()), "<i2")
    assert out.tolist() == [0, 0, 50, 100, 150, 200]
    down = RatioResampler(24_000, 8_000)
    out = np.frombuffer(down.push(np.array([3, 6, 9, 30], "<i2").tobytes()), "<i2")
    assert out.tolist() == [6]
    assert RatioResampler(16_000, 16_000).push(b"\x01\x00") == b"\x01\x00"
    with pytest.raises(AudioError):
        RatioResampler(16_000, 24_000)
