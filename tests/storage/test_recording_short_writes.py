"""write(2) may write less than it was asked to (at the edge of a full disk or a
file-size limit, on some file systems always): the recorder must finish the
write, or the two channels of everything after it are shifted."""

from __future__ import annotations

import io
import wave
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from phonebridge.storage.recording import CallRecorder

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer is 3.12+


class ShortWrites(io.FileIO):
    """A real file whose every write(2) stops after ``limit`` bytes."""

    limit = 1002  # not a multiple of the 4-byte stereo frame

    def write(self, data: Buffer) -> int:
        view = memoryview(data).cast("B")
        return super().write(view[: self.limit])


def test_short_writes_are_completed_and_the_channels_stay_aligned(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"

    def opener(p: Path) -> BinaryIO:
        return ShortWrites(p, "xb")

    recorder = CallRecorder(path, opener=opener)
    caller = np.arange(8000, dtype="<i2")  # 1 s, distinct values per sample
    agent = -caller
    recorder.add_caller(caller.tobytes(), 0)
    recorder.add_agent(agent.tobytes(), 0)
    info = recorder.close()
    assert info.complete
    with wave.open(str(path)) as wav:
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    assert len(frames) == 8000
    assert (frames[:, 0] == caller).all()
    assert (frames[:, 1] == agent).all()
