"""Where a call's files live under the data directory, and the guard that keeps them there.

Layout (dates are the call's UTC start date)::

    data_dir/recordings/YYYY/MM/DD/<call_sid>.wav
    data_dir/transcripts/YYYY/MM/DD/<call_sid>.json
    data_dir/calls.db                      (the default SQLite call index)

A call SID reaches us from the network (the Twilio webhook and the Media
Streams ``start`` message), so it is validated against Twilio's documented
format (``CA`` + 32 lowercase hex digits) before it becomes part of a path:
with that alphabet no separator, ``..`` or NUL can get in. The simulators mint
SIDs in the same format, so they pass the same check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from phonebridge.errors import StorageError

CALL_SID_PATTERN = re.compile(r"CA[0-9a-f]{32}")

RECORDINGS_DIR = "recordings"
TRANSCRIPTS_DIR = "transcripts"
INDEX_FILENAME = "calls.db"


def is_valid_call_sid(call_sid: str) -> bool:
    """True when ``call_sid`` has Twilio's call SID shape (``CA`` + 32 hex digits)."""
    return CALL_SID_PATTERN.fullmatch(call_sid) is not None


def validate_call_sid(call_sid: str) -> str:
    """Return ``call_sid`` unchanged, or raise :class:`StorageError` if it is not a call SID."""
    if not is_valid_call_sid(call_sid):
        # repr() so control characters in a hostile value stay visible and harmless in logs
        raise StorageError(f"not a call SID: {call_sid[:64]!r}")
    return call_sid


@dataclass(frozen=True, slots=True)
class CallPaths:
    """The absolute paths of one call's recording and transcript."""

    recording: Path
    transcript: Path


@dataclass(frozen=True, slots=True)
class CallKeys:
    """A call's files relative to the data directory: also their object-store keys."""

    recording: str
    transcript: str


def call_keys(call_sid: str, started_at: datetime) -> CallKeys:
    """``recordings/YYYY/MM/DD/<sid>.wav`` and ``transcripts/.../<sid>.json``.

    The same on every replica (it depends on the row's SID and start time
    only), so any replica finds a call's files in the object store.
    ``started_at`` must be timezone-aware; it is converted to UTC so a call's
    folder does not depend on the server's local time zone.
    """
    validate_call_sid(call_sid)
    if started_at.tzinfo is None:
        raise ValueError("started_at must be timezone-aware")
    day = started_at.astimezone(UTC).strftime("%Y/%m/%d")
    return CallKeys(
        recording=f"{RECORDINGS_DIR}/{day}/{call_sid}.wav",
        transcript=f"{TRANSCRIPTS_DIR}/{day}/{call_sid}.json",
    )


def call_paths(data_dir: Path, call_sid: str, started_at: datetime) -> CallPaths:
    """Where the files of the call ``call_sid`` that started at ``started_at`` go."""
    keys = call_keys(call_sid, started_at)
    base = data_dir.resolve()
    return CallPaths(recording=base / keys.recording, transcript=base / keys.transcript)


def resolve_inside(data_dir: Path, path: Path | str) -> Path:
    """Resolve ``path`` (relative paths are taken from ``data_dir``) and check it stays inside.

    Symlinks are followed before the check, so a link that points out of the
    data directory is refused rather than trusted. Raises :class:`StorageError`
    when the resolved path is not ``data_dir`` itself or below it.
    """
    base = data_dir.resolve()
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = base / candidate
    resolved = candidate.resolve()
    if not resolved.is_relative_to(base):
        raise StorageError(f"path escapes the data directory: {str(path)[:200]!r}")
    return resolved
