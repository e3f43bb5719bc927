"""The recorder's pending channel: its in-order fast path must mix exactly like numpy.

``_PendingChannel`` keeps in-order pieces as bytes and only builds arrays
for overlaps, gaps and takes. A plain int32 timeline is the reference: any
sequence of adds (in order, overlapping, past a gap), takes and truncations
gives the same samples.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from phonebridge.storage.recording import _PendingChannel

samples = st.lists(st.integers(-32768, 32767), min_size=1, max_size=40)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), samples),
        st.tuples(st.just("add"), st.tuples(st.integers(0, 60), samples)),
        st.tuples(st.just("take"), st.integers(0, 50)),
        st.tuples(st.just("truncate"), st.integers(0, 50)),
    ),
    max_size=30,
)


class ReferenceChannel:
    def __init__(self) -> None:
        self.samples: list[int] = []

    def add(self, piece: list[int], offset: int) -> None:
        end = offset + len(piece)
        self.samples += [0] * max(0, end - len(self.samples))
        for i, value in enumerate(piece):
            self.samples[offset + i] = max(-32768, min(32767, self.samples[offset + i] + value))

    def take(self, count: int) -> list[int]:
        head = (self.samples[:count] + [0] * count)[:count]
        self.samples = self.samples[count:]
        return head


def pcm(values: list[int]) -> bytes:
    return np.array(values, dtype="<i2").tobytes()


@settings(max_examples=300)
@given(operations)
def test_any_sequence_matches_the_reference(ops: list[tuple[str, object]]) -> None:
    channel, reference = _PendingChannel(), ReferenceChannel()
    for kind, argument in ops:
        if kind == "append":  # the usual case: the piece starts where the last ended
            assert isinstance(argument, list)
            offset = len(reference.samples)
            channel.add(pcm(argument), offset)
            reference.add(argument, offset)
        elif kind == "add":
            assert isinstance(argument, tuple)
            offset, piece = argument
            channel.add(pcm(piece), offset)
            reference.add(piece, offset)
        elif kind == "take":
            assert isinstance(argument, int)
            assert channel.take(argument).tolist() == reference.take(argument)
        else:
            assert isinstance(argument, int)
            channel.truncate(argument)
            reference.samples = reference.samples[:argument]
        assert channel.length == len(reference.samples)
    assert channel.take(channel.length).tolist() == reference.samples
