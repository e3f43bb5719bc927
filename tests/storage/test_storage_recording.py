"""The stereo call recording: alignment, gaps, overlaps, crash safety and disk-full behaviour."""

from __future__ import annotations

import errno
import io
import os
import signal
import struct
import subprocess
import sys
import textwrap
import wave
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonebridge.errors import AudioError, StorageError
from phonebridge.storage.recording import (
    HEADER_BYTES,
    CallRecorder,
    repair_wav,
    wav_header,
)

RATE = 8000


def pcm(values: np.ndarray | list[int]) -> bytes:
    return np.asarray(values, dtype="<i2").tobytes()


def tone(samples: int, amplitude: int = 8000, freq: float = 440.0) -> np.ndarray:
    t = np.arange(samples) / RATE
    out = np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    out[0] = amplitude  # a non-zero first sample marks the onset exactly
    return out


def read_channels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 2
        assert w.getsampwidth() == 2
        assert w.getframerate() == RATE
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    return frames[:, 0].copy(), frames[:, 1].copy()


def test_header_is_canonical_and_says_no_audio_yet(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "call.wav"
    recorder = CallRecorder(path)
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (
            2,
            2,
            RATE,
            0,
        )
    info = recorder.close()
    assert info.frames == 0
    assert path.stat().st_size == HEADER_BYTES


def test_caller_tone_lands_on_the_left_at_exactly_its_sample(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = CallRecorder(path)
    caller_at, agent_at = 12_345, 20_011
    # the call sends 20 ms frames; the tone starts mid-timeline and is framed on its own grid
    caller_tone = tone(4_000)
    agent_tone = tone(3_200, amplitude=-5000, freq=300.0)
    for start in range(0, len(caller_tone), 160):
        recorder.add_caller(pcm(caller_tone[start : start + 160]), caller_at + start)
    for start in range(0, len(agent_tone), 1280):  # the agent arrives in 80 ms pieces
        recorder.add_agent(pcm(agent_tone[start : start + 1280]), agent_at + start)
    info = recorder.close()
    left, right = read_channels(path)
    assert info.frames == len(left) == agent_at + len(agent_tone)
    assert np.flatnonzero(left)[0] == caller_at
    assert np.flatnonzero(right)[0] == agent_at
    np.testing.assert_array_equal(left[caller_at : caller_at + len(caller_tone)], caller_tone)
    np.testing.assert_array_equal(right[agent_at : agent_at + len(agent_tone)], agent_tone)
    assert not left[caller_at + len(caller_tone) :].any()
    assert not right[:agent_at].any()
    assert info.duration_seconds == pytest.approx(info.frames / RATE)
    assert info.size_bytes == path.stat().st_size


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 400), st.integers(1, 700)),
        max_size=25,
    ),
    st.integers(1, 10**6),
)
def test_any_interleaving_of_in_order_channels_matches_a_reference(
    tmp_path_factory: pytest.TempPathFactory,
    steps: list[tuple[bool, int, int]],
    seed: int,
) -> None:
    """Each channel moves forward (gaps allowed); however the two interleave, the file is exact."""
    path = tmp_path_factory.mktemp("prop") / "call.wav"
    rng = np.random.default_rng(seed)
    recorder = CallRecorder(path, flush_every_seconds=0.05, max_lag_seconds=1000)
    cursor = {True: 0, False: 0}
    pieces: dict[bool, list[tuple[int, np.ndarray]]] = {True: [], False: []}
    for is_caller, gap, length in steps:
        at = cursor[is_caller] + gap
        samples = rng.integers(-32768, 32767, length, dtype=np.int16)
        (recorder.add_caller if is_caller else recorder.add_agent)(pcm(samples), at)
        pieces[is_caller].append((at, samples))
        cursor[is_caller] = at + length
    info = recorder.close()
    total = max(cursor.values())
    expected = {flag: np.zeros(total, dtype=np.int16) for flag in (True, False)}
    for flag, placed in pieces.items():
        for at, samples in placed:
            expected[flag][at : at + len(samples)] = samples
    left, right = read_channels(path)
    assert info.frames == total
    np.testing.assert_array_equal(left, expected[True])
    np.testing.assert_array_equal(right, expected[False])
    assert recorder.late_samples_dropped == 0


def test_overlap_on_pending_positions_is_mixed_with_saturation(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = CallRecorder(path)
    recorder.add_agent(pcm([1000, 30000, -30000, 5]), 100)
    recorder.add_agent(pcm([3000, -3000, 7]), 101)
    recorder.close()
    _, right = read_channels(path)
    assert right[100:104].tolist() == [1000, 32767, -32768, 12]


def test_audio_for_positions_already_written_is_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = CallRecorder(path)
    recorder.advance_to(1600)  # the clock says: everything before 200 ms is final
    assert recorder.frames_written == 1600
    late = np.arange(1, 1761, dtype=np.int16)
    recorder.add_caller(pcm(late), 0)
    assert recorder.late_samples_dropped == 1600
    recorder.close()
    left, _ = read_channels(path)
    assert not left[:1600].any()
    np.testing.assert_array_equal(left[1600:], late[1600:])


def test_gaps_are_silence_and_the_shorter_channel_is_padded(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = CallRecorder(path)
    recorder.add_caller(pcm(np.full(160, 111)), 0)
    recorder.add_caller(pcm(np.full(160, 222)), 8000)  # 1 s later, nothing in between
    recorder.add_agent(pcm(np.full(160, 333)), 4000)
    info = recorder.close()
    left, right = read_channels(path)
    assert info.frames == 8160
    assert set(np.unique(left).tolist()) == {0, 111, 222}
    assert not left[160:8000].any()
    assert not right[4160:].any()
    assert (right[4000:4160] == 333).all()


def test_clock_horizon_beyond_audio_extends_the_recording_with_silence(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = CallRecorder(path)
    recorder.add_caller(pcm([5] * 160), 0)
    recorder.advance_to(16_000)
    assert recorder.close().frames == 16_000


def test_writes_incrementally_and_rewrites_the_header_every_flush(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = CallRecorder(path, flush_every_seconds=1.0)
    frame = pcm(tone(160))
    for tick in range(75):  # 1.5 s of both channels, 20 ms at a time
        recorder.add_caller(frame, tick * 160)
        recorder.add_agent(frame, tick * 160)
    assert recorder.frames_written >= 11_200  # all but the last write block
    assert recorder.frames_in_header >= RATE
    with wave.open(str(path), "rb") as w:  # readable while the call goes on
        assert w.getnframes() == recorder.frames_in_header
    recorder.close()


def test_one_silent_side_cannot_hold_back_the_file(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = CallRecorder(path, max_lag_seconds=2.0)
    for tick in range(250):  # 5 s of caller audio, the agent never speaks, no clock
        recorder.add_caller(pcm([1] * 160), tick * 160)
    assert recorder.frames_written >= 3 * RATE - 160
    recorder.close()


def test_agent_audio_scheduled_ahead_never_makes_caller_positions_final(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = CallRecorder(path, max_lag_seconds=2.0)
    recorder.add_agent(pcm(tone(5 * RATE)), 0)  # 5 s of agent speech queued at once
    caller = tone(5 * RATE, amplitude=3000, freq=200.0)
    for start in range(0, len(caller), 160):  # the caller arrives in real time
        recorder.add_caller(pcm(caller[start : start + 160]), start)
    assert recorder.late_samples_dropped == 0
    recorder.close()
    left, right = read_channels(path)
    np.testing.assert_array_equal(left, caller)
    np.testing.assert_array_equal(right, tone(5 * RATE))


def test_cleared_agent_audio_is_not_recorded(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = CallRecorder(path)
    recorder.add_agent(pcm(np.full(8000, 500)), 0)  # 1 s queued for playback
    recorder.advance_to(1600)  # 200 ms played ...
    recorder.discard_agent_from(2400)  # ... then the caller barged in at 300 ms
    recorder.add_agent(pcm(np.full(800, -9)), 2400)  # the model's new answer
    recorder.advance_to(8000)
    recorder.close()
    _, right = read_channels(path)
    assert (right[:2400] == 500).all()
    assert (right[2400:3200] == -9).all()  # replaced, not mixed with the cleared audio
    assert not right[3200:].any()


def test_odd_length_pcm_is_refused(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "call.wav")
    with pytest.raises(AudioError, match="even length"):
        recorder.add_caller(b"\x00\x01\x02", 0)
    recorder.close()


def test_an_existing_recording_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    path.write_bytes(b"precious")
    with pytest.raises(StorageError, match="cannot create recording"):
        CallRecorder(path)
    assert path.read_bytes() == b"precious"


def test_close_is_idempotent_and_later_audio_is_ignored(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "call.wav")
    recorder.add_caller(pcm([1] * 160), 0)
    first = recorder.close()
    recorder.add_caller(pcm([1] * 160), 160)
    assert recorder.close() == first
    assert first.frames == 160
    assert first.complete


class DiskFillsUp(io.RawIOBase):
    """A real file that raises ENOSPC once more than ``capacity`` bytes were written."""

    def __init__(self, path: Path, capacity: int) -> None:
        self._file = open(path, "xb", buffering=0)  # noqa: SIM115 - closed in close()
        self._capacity = capacity
        self.refused = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        position = self._file.tell()
        if position + len(data) > self._capacity:
            self.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._file.write(data) or 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()
        super().close()


def test_disk_full_raises_once_then_the_recorder_turns_itself_off(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    disks: list[DiskFillsUp] = []

    def opener(p: Path) -> BinaryIO:
        disks.append(DiskFillsUp(p, capacity=HEADER_BYTES + 4 * 8000))  # room for 1 s
        return disks[0]  # type: ignore[return-value]

    recorder = CallRecorder(path, opener=opener, flush_every_seconds=0.5)
    frame = pcm(tone(160))
    errors: list[StorageError] = []
    for tick in range(150):  # 3 s: the disk fills after 1 s
        try:
            recorder.add_caller(frame, tick * 160)
            recorder.add_agent(frame, tick * 160)
        except StorageError as exc:
            errors.append(exc)
    assert len(errors) == 1
    cause = errors[0].__cause__
    assert isinstance(cause, OSError)
    assert cause.errno == errno.ENOSPC
    assert recorder.failed
    assert disks[0].refused == 1  # nothing was tried after the failure
    info = recorder.close()  # must not raise: the call goes on
    assert not info.complete
    assert info.error is not None
    assert "ENOSPC" in info.error or "No space" in info.error
    # what reached the disk is a valid WAV with the first second in it
    left, _ = read_channels(path)
    assert info.frames == len(left) >= RATE - 800
    np.testing.assert_array_equal(left[:160], tone(160))


def test_a_full_disk_at_the_start_is_a_storage_error(tmp_path: Path) -> None:
    def opener(p: Path) -> BinaryIO:
        return DiskFillsUp(p, capacity=0)  # type: ignore[return-value]

    with pytest.raises(StorageError, match="cannot create recording"):
        CallRecorder(tmp_path / "call.wav", opener=opener)


def test_repair_sets_sizes_from_the_length_and_cuts_a_partial_frame(tmp_path: Path) -> None:
    path = tmp_path / "crashed.wav"
    audio = np.arange(-500, 500, dtype="<i2")  # 500 stereo frames
    path.write_bytes(wav_header(RATE, 0) + audio.tobytes() + b"\x01\x02\x03")
    info = repair_wav(path)
    assert info is not None
    assert info.frames == 500
    assert path.stat().st_size == HEADER_BYTES + 2000
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == 500
        assert w.readframes(500) == audio.tobytes()
    riff_size = struct.unpack_from("<I", path.read_bytes(), 4)[0]
    assert riff_size == path.stat().st_size - 8


@pytest.mark.parametrize(
    "content",
    [b"", b"RIFF", b"not a wave file at all" * 3, b"RIFF\x00\x00\x00\x00WAVEdata\x00\x00\x00\x00"],
)
def test_repair_leaves_non_wavs_alone(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(content)
    assert repair_wav(path) is None
    assert path.read_bytes() == content


CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from pathlib import Path
    from phonebridge.storage.recording import CallRecorder

    recorder = CallRecorder(Path(sys.argv[1]), flush_every_seconds=0.25)
    reported = -1
    deadline = time.monotonic() + 30
    tick = 0
    while time.monotonic() < deadline:
        ramp = (np.arange(tick * 160, tick * 160 + 160) % 20000).astype("<i2")
        recorder.add_caller(ramp.tobytes(), tick * 160)
        recorder.add_agent((-ramp).tobytes(), tick * 160)
        tick += 1
        if recorder.frames_in_header != reported:
            reported = recorder.frames_in_header
            print(recorder.frames_in_header, recorder.frames_written, flush=True)
        time.sleep(0.001)
    """
)


def test_killed_writer_leaves_a_playable_file_that_repair_completes(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    try:
        in_header = written = 0
        while in_header < 3 * RATE:  # wait for a few header rewrites
            line = child.stdout.readline()
            assert line, "the writer died before it was killed"
            in_header, written = map(int, line.split())
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    # as the killer left it: the header describes at least the last rewrite
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() >= in_header
    info = repair_wav(path)
    assert info is not None
    assert info.frames >= written
    left, right = read_channels(path)
    expected = (np.arange(info.frames) % 20000).astype(np.int16)
    np.testing.assert_array_equal(left, expected)
    np.testing.assert_array_equal(right, -expected)
