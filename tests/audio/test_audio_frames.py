"""FrameChunker: exact frames out of a byte stream cut anyhow."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phonebridge.audio.frames import FrameChunker


@given(st.integers(1, 50), st.lists(st.binary(max_size=120), max_size=20))
def test_frames_plus_remainder_rebuild_the_stream(size: int, chunks: list[bytes]) -> None:
    chunker = FrameChunker(size)
    frames = [frame for chunk in chunks for frame in chunker.push(chunk)]
    assert all(len(frame) == size for frame in frames)
    assert chunker.pending < size
    rest = chunker.flush()
    assert b"".join(frames) + rest == b"".join(chunks)
    assert chunker.pending == 0
    assert chunker.flush() == b""


def test_exact_frames_pass_straight_through() -> None:
    chunker = FrameChunker(4)
    assert chunker.push(b"abcd") == [b"abcd"]
    assert chunker.push(b"ab") == []
    assert chunker.push(b"cdefghij") == [b"abcd", b"efgh"]
    assert chunker.flush() == b"ij"


def test_frame_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        FrameChunker(0)
