"""The call recording: one stereo WAV, left = caller, right = agent, 8 kHz s16le.

File format: RIFF/WAVE with a canonical 44-byte header (``fmt `` chunk of 16
bytes, PCM, then one ``data`` chunk), as in the Microsoft RIFF multimedia
specification ("WAVE form", PCM ``fmt`` chunk).

Timeline. Both channels sit on the call's own sample timeline (sample 0 = the
call started; 8000 samples = 1 s). The orchestrator hands each piece of audio
in with the timeline index of its first sample; stretches nobody filled are
silence, so the two sides stay aligned whatever arrives when.

Incremental writing. Audio is kept in a small pending buffer per channel and
written (interleaved) once it is *final*. A position is final when

* both channels have been given audio past it, or
* the call clock said so with :meth:`CallRecorder.advance_to` (call it every
  tick: "nothing will be added before this sample any more"), or
* it lies more than ``max_lag_seconds`` behind the newest *caller* audio (a
  safety net that bounds memory if ``advance_to`` is never called and the agent
  is silent). Only the caller channel drives it: caller audio arrives in real
  time, while agent audio may legitimately be scheduled ahead of the line
  (it sits in Twilio's playout queue) and must not make the present final.

Barge-in: when the orchestrator sends Twilio a ``clear``, agent audio queued
for the future never reaches the line; :meth:`CallRecorder.discard_agent_from`
removes it from the recording too (as long as it is still pending).

Overlaps, decided: audio added at positions still pending is **mixed** into
what is there (saturating add) — both pieces were really sent, so neither is
silently lost; audio at positions already written to disk is **dropped** and
counted in :attr:`CallRecorder.late_samples_dropped` (rewriting the past would
break the "playable up to the last flush" promise).

Crash safety. Every write goes straight to the OS (unbuffered file), so a
``kill -9`` loses nothing already written. The header's RIFF and ``data`` sizes
are rewritten every ``flush_every_seconds`` of audio, so the file left behind
is playable up to the last header rewrite as it is; :func:`repair_wav` then
recovers everything up to the last complete frame.

Disk full (or any OS error): the call must go on. The first failing operation
raises :class:`StorageError` once; the recorder then turns itself off — later
``add_*`` calls are no-ops — and :meth:`CallRecorder.close` still returns what
is on disk (``complete=False``) without raising.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from phonebridge.errors import AudioError, StorageError

CHANNELS = 2
SAMPLE_WIDTH = 2
FRAME_BYTES = CHANNELS * SAMPLE_WIDTH  # one stereo sample frame
HEADER_BYTES = 44
_DATA_SIZE_OFFSET = 40
_RIFF_SIZE_OFFSET = 4
_MAX_DATA_BYTES = 0xFFFF_FFFF - (HEADER_BYTES - 8)  # what a 32-bit RIFF size can describe

# Why 100 ms: small enough that a crash loses little, large enough that a call
# makes ~10 writes a second instead of ~100.
_WRITE_BLOCK_SECONDS = 0.1

Samples = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """What a finished (or repaired) recording holds."""

    path: Path
    frames: int  # stereo sample frames in the data chunk
    sample_rate: int
    size_bytes: int  # the whole file
    complete: bool = True  # False when writing failed part-way (disk full, ...)
    error: str | None = None  # why it is incomplete

    @property
    def duration_seconds(self) -> float:
        return self.frames / self.sample_rate


def wav_header(sample_rate: int, data_bytes: int) -> bytes:
    """A canonical 44-byte stereo 16-bit PCM header for ``data_bytes`` of audio."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        HEADER_BYTES - 8 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # WAVE_FORMAT_PCM
        CHANNELS,
        sample_rate,
        sample_rate * FRAME_BYTES,
        FRAME_BYTES,
        8 * SAMPLE_WIDTH,
        b"data",
        data_bytes,
    )


def _write_all(file: BinaryIO, data: bytes) -> None:
    """Write every byte or raise: at the edge of a full disk or a file-size limit
    write(2) writes what fits and returns a short count without an error; the
    next call is the one that fails (ENOSPC, EFBIG), and must be made."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        if not written:
            raise OSError(errno.ENOSPC, "write made no progress")
        view = view[written:]


def _open_exclusive(path: Path) -> BinaryIO:
    # Unbuffered: each write() is one write(2), so kill -9 cannot strand audio in
    # a userspace buffer. "x": never overwrite a recording (e.g. a crashed one).
    return open(path, "xb", buffering=0)


class _PendingChannel:
    """Samples of one channel from the write position on; gaps are zeros.

    Audio almost always arrives in order, each piece starting where the last
    ended: those pieces are kept as bytes and joined when the writer takes
    them (every 100 ms), so the per-frame cost is a list append. numpy only
    runs for the rare piece that overlaps (mixed in) or leaves a gap; the load
    profile had the numpy calls per 20 ms frame at 6 % of a call's CPU.
    """

    __slots__ = ("_appended", "_samples", "high", "length")

    def __init__(self) -> None:
        self._samples: Samples = np.zeros(0, dtype=np.int16)
        self._appended: list[bytes] = []  # s16le pieces that follow _samples
        self.length = 0  # pending samples: _samples plus the appended pieces
        self.high = 0  # timeline index one past the newest sample ever given

    def add(self, pcm: bytes, offset: int) -> None:
        """Mix s16le ``pcm`` in at ``offset`` samples past the write position (offset >= 0)."""
        count = len(pcm) // SAMPLE_WIDTH
        if offset == self.length:
            self._appended.append(pcm)
            self.length += count
            return
        piece: Samples = np.frombuffer(pcm, dtype="<i2").astype(np.int16)
        samples = self._joined()
        end = offset + count
        if end > len(samples):
            grown = np.zeros(end, dtype=np.int16)
            grown[: len(samples)] = samples
            samples = grown
        window = samples[offset:end]
        if window.any():
            mixed = window.astype(np.int32) + piece
            window[:] = np.clip(mixed, -32768, 32767)
        else:
            window[:] = piece
        self._samples = samples
        self.length = len(samples)

    def take(self, count: int) -> Samples:
        """Remove and return the first ``count`` samples, zero-padded if fewer are held."""
        samples = self._joined()
        head = np.zeros(count, dtype=np.int16)
        held = min(count, len(samples))
        head[:held] = samples[:held]
        self._samples = samples[held:].copy() if held < len(samples) else samples[:0]
        self.length = len(self._samples)
        return head

    def truncate(self, keep: int) -> None:
        """Forget pending samples from ``keep`` on."""
        self._samples = self._joined()[:keep].copy()
        self.length = len(self._samples)

    def _joined(self) -> Samples:
        if self._appended:
            tail = np.frombuffer(b"".join(self._appended), dtype="<i2").astype(np.int16)
            self._samples = np.concatenate((self._samples, tail))
            self._appended = []
        return self._samples


class CallRecorder:
    """Writes one call's stereo WAV incrementally; see the module docstring for the rules.

    Not thread-safe; meant to be driven from the call's own task. Each
    ``add_*`` costs a few microseconds plus, every 100 ms of audio, one write
    of ~1.6 KB; the constructor and :meth:`close` do blocking file work
    (create, fsync) that is short but not free.
    """

    def __init__(
        self,
        path: Path,
        *,
        sample_rate: int = 8000,
        flush_every_seconds: float = 1.0,
        max_lag_seconds: float = 2.0,
        opener: Callable[[Path], BinaryIO] = _open_exclusive,
    ) -> None:
        """Create ``path`` (and its folders) and write a header that says "no audio yet".

        Raises :class:`StorageError` if the file cannot be created (it exists,
        the disk is full, no permission): record nothing and carry on the call.
        """
        self.path = path
        self.sample_rate = sample_rate
        self._flush_every = max(1, round(flush_every_seconds * sample_rate))
        self._max_lag = max(1, round(max_lag_seconds * sample_rate))
        self._write_block = max(1, round(_WRITE_BLOCK_SECONDS * sample_rate))
        self._caller = _PendingChannel()
        self._agent = _PendingChannel()
        self._clock_horizon = 0
        self._written = 0  # frames written to the data chunk
        self._in_header = 0  # frames the header currently describes
        self._failed = False
        self._error: str | None = None
        self._info: RecordingInfo | None = None
        self.late_samples_dropped = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file: BinaryIO = opener(path)
        except OSError as exc:
            raise StorageError(f"cannot create recording {path}: {exc}") from exc
        try:
            self._file.write(wav_header(sample_rate, 0))
        except OSError as exc:
            self._file.close()
            raise StorageError(f"cannot create recording {path}: {exc}") from exc

    # -- state ---------------------------------------------------------------

    @property
    def failed(self) -> bool:
        """True once a write failed and the recorder turned itself off."""
        return self._failed

    @property
    def frames_written(self) -> int:
        """Stereo frames handed to the OS so far (what :func:`repair_wav` would recover)."""
        return self._written

    @property
    def frames_in_header(self) -> int:
        """Stereo frames the on-disk header describes (playable without repair)."""
        return self._in_header

    # -- input ---------------------------------------------------------------

    def add_caller(self, pcm8: bytes, at_sample: int) -> None:
        """Caller audio (8 kHz s16le mono) whose first sample is timeline sample ``at_sample``."""
        self._add(self._caller, pcm8, at_sample)

    def add_agent(self, pcm8: bytes, at_sample: int) -> None:
        """Agent audio (8 kHz s16le mono) as played on the line, starting at ``at_sample``."""
        self._add(self._agent, pcm8, at_sample)

    def advance_to(self, sample: int) -> None:
        """The call clock's promise: no audio will be added before timeline sample ``sample``."""
        if sample > self._clock_horizon:
            self._clock_horizon = sample
            self._write_final()

    def discard_agent_from(self, sample: int) -> None:
        """Forget pending agent audio at timeline positions >= ``sample`` (Twilio ``clear``).

        Positions already written stay as they are; the agent's newest position
        moves back to ``sample`` so new speech can be added there without mixing.
        """
        if self._failed or self._info is not None:
            return
        keep = max(0, sample - self._written)
        agent = self._agent
        agent.truncate(keep)
        agent.high = min(agent.high, max(sample, self._written))

    def _add(self, channel: _PendingChannel, pcm8: bytes, at_sample: int) -> None:
        if len(pcm8) % SAMPLE_WIDTH:
            raise AudioError(f"16-bit PCM must have an even length, got {len(pcm8)} bytes")
        if self._failed or self._info is not None or not pcm8:
            return
        offset = at_sample - self._written
        if offset < 0:
            # These positions are already on disk: drop the late part (module docstring).
            late = min(-offset, len(pcm8) // SAMPLE_WIDTH)
            self.late_samples_dropped += late
            pcm8 = pcm8[late * SAMPLE_WIDTH :]
            offset = 0
            if not pcm8:
                return
        channel.add(pcm8, offset)
        channel.high = max(channel.high, self._written + offset + len(pcm8) // SAMPLE_WIDTH)
        self._write_final()

    # -- output --------------------------------------------------------------

    def _final_position(self) -> int:
        both_given = min(self._caller.high, self._agent.high)
        return max(self._clock_horizon, both_given, self._caller.high - self._max_lag)

    def _write_final(self) -> None:
        final = self._final_position()
        if final - self._written >= self._write_block:
            self._write_frames(final - self._written)

    def _write_frames(self, count: int) -> None:
        if count <= 0 or self._failed:
            return
        if (self._written + count) * FRAME_BYTES > _MAX_DATA_BYTES:
            # ~74 hours at 8 kHz stereo; a call never gets here, but a 32-bit size must not wrap.
            count = _MAX_DATA_BYTES // FRAME_BYTES - self._written
            if count <= 0:
                return
        stereo = np.empty((count, CHANNELS), dtype="<i2")
        stereo[:, 0] = self._caller.take(count)
        stereo[:, 1] = self._agent.take(count)
        try:
            _write_all(self._file, stereo.tobytes())
            self._written += count
            if self._written - self._in_header >= self._flush_every:
                self._rewrite_header()
        except OSError as exc:
            self._fail(exc)

    def _rewrite_header(self) -> None:
        data_bytes = self._written * FRAME_BYTES
        self._file.seek(_RIFF_SIZE_OFFSET)
        self._file.write(struct.pack("<I", HEADER_BYTES - 8 + data_bytes))
        self._file.seek(_DATA_SIZE_OFFSET)
        self._file.write(struct.pack("<I", data_bytes))
        self._file.seek(0, os.SEEK_END)
        self._in_header = self._written

    def _fail(self, exc: OSError) -> None:
        self._failed = True
        self._error = f"{type(exc).__name__}: {exc}"
        self._caller = _PendingChannel()
        self._agent = _PendingChannel()
        with contextlib.suppress(OSError):
            self._file.close()
        raise StorageError(f"recording {self.path} stopped: {exc}") from exc

    def close(self) -> RecordingInfo:
        """Write everything pending (the shorter channel padded with silence), fix the header,
        fsync and close. Idempotent and never raises: if writing fails (now or earlier) the
        result has ``complete=False`` and ``error`` says why."""
        if self._info is not None:
            return self._info
        if not self._failed:
            end = max(self._clock_horizon, self._caller.high, self._agent.high)
            try:
                self._write_frames(end - self._written)
                try:
                    self._rewrite_header()
                    self._file.flush()
                    os.fsync(self._file.fileno())
                    self._file.close()
                except OSError as exc:
                    self._fail(exc)
            except StorageError:
                pass  # _fail() recorded the cause; report it below instead of raising
        if self._failed:
            self._info = self._describe_failed()
        else:
            self._info = RecordingInfo(
                path=self.path,
                frames=self._written,
                sample_rate=self.sample_rate,
                size_bytes=HEADER_BYTES + self._written * FRAME_BYTES,
            )
        return self._info

    def _describe_failed(self) -> RecordingInfo:
        # The header only needs bytes already allocated, so fixing it usually
        # works even on a full disk; if not, report what the old header said.
        repaired: RecordingInfo | None = None
        with contextlib.suppress(OSError):
            repaired = repair_wav(self.path)
        frames = repaired.frames if repaired else self._in_header
        size = repaired.size_bytes if repaired else HEADER_BYTES + frames * FRAME_BYTES
        return RecordingInfo(
            self.path, frames, self.sample_rate, size, complete=False, error=self._error
        )


def _find_chunks(head: bytes) -> tuple[int, int, int] | None:
    """(sample_rate, block_align, data_offset) of a RIFF/WAVE header, or None."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    fmt: tuple[int, int] | None = None
    while pos + 8 <= len(head):
        chunk_id, chunk_size = struct.unpack_from("<4sI", head, pos)
        body = pos + 8
        if chunk_id == b"fmt " and chunk_size >= 16 and body + 16 <= len(head):
            _, _, rate, _, align, _ = struct.unpack_from("<HHIIHH", head, body)
            fmt = (rate, align)
        elif chunk_id == b"data":
            if fmt is None or fmt[1] == 0:
                return None
            return fmt[0], fmt[1], body
        pos = body + chunk_size + (chunk_size & 1)  # chunks are word-aligned
    return None


def repair_wav(path: Path) -> RecordingInfo | None:
    """Make a WAV left by a killed writer consistent: sizes from the file length.

    A trailing partial frame is cut off. Everything after the ``data`` chunk's
    start counts as audio, which holds for the files :class:`CallRecorder`
    writes (``data`` is their last chunk). Returns None (and changes nothing) if
    ``path`` is not a RIFF/WAVE file with a ``fmt `` and a ``data`` chunk in
    its first 4 KB. Raises ``OSError`` if the file cannot be read or written.
    """
    with open(path, "r+b") as file:
        found = _find_chunks(file.read(4096))
        if found is None:
            return None
        sample_rate, block_align, data_offset = found
        length = file.seek(0, os.SEEK_END)
        data_bytes = max(0, length - data_offset)
        data_bytes -= data_bytes % block_align
        data_bytes = min(data_bytes, _MAX_DATA_BYTES - _MAX_DATA_BYTES % block_align)
        new_length = data_offset + data_bytes
        if new_length != length:
            file.truncate(new_length)
        file.seek(_RIFF_SIZE_OFFSET)
        file.write(struct.pack("<I", new_length - 8))
        file.seek(data_offset - 4)
        file.write(struct.pack("<I", data_bytes))
        file.flush()
        os.fsync(file.fileno())
    return RecordingInfo(
        path=path,
        frames=data_bytes // block_align,
        sample_rate=sample_rate,
        size_bytes=new_length,
    )
