"""Paths of a call's files, and the guard that keeps every path inside the data directory."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phonebridge.errors import StorageError
from phonebridge.storage.layout import (
    call_paths,
    is_valid_call_sid,
    resolve_inside,
    validate_call_sid,
)

SID = "CA" + "0123456789abcdef" * 2


def test_call_paths_use_the_utc_start_date(tmp_path: Path) -> None:
    # 23:30 at UTC-2 is already the next day in UTC
    started = datetime(2024, 3, 9, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    paths = call_paths(tmp_path, SID, started)
    assert paths.recording == tmp_path.resolve() / "recordings/2024/03/10" / f"{SID}.wav"
    assert paths.transcript == tmp_path.resolve() / "transcripts/2024/03/10" / f"{SID}.json"


def test_call_paths_refuse_naive_datetimes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        call_paths(tmp_path, SID, datetime(2024, 1, 1))  # naive on purpose


@pytest.mark.parametrize(
    "sid",
    [
        "",
        "CA",
        "CA" + "0" * 31,
        "CA" + "0" * 33,
        "CA" + "A" * 32,  # uppercase hex is not Twilio's format
        "MZ" + "0" * 32,
        "../" + "0" * 32,
        "CA" + "0" * 30 + "/.",
        "CA" + "0" * 32 + "\n",
        "CA" + "0" * 32 + "\x00",
    ],
)
def test_bad_call_sids_never_reach_a_path(tmp_path: Path, sid: str) -> None:
    assert not is_valid_call_sid(sid)
    with pytest.raises(StorageError, match="not a call SID"):
        validate_call_sid(sid)
    with pytest.raises(StorageError):
        call_paths(tmp_path, sid, datetime.now(UTC))


@given(st.text(max_size=40))
def test_any_accepted_sid_is_a_plain_file_name(text: str) -> None:
    sid = "CA" + text
    if is_valid_call_sid(sid):
        assert "/" not in sid
        assert ".." not in sid
        assert Path(sid).name == sid


def test_valid_sid_passes_unchanged() -> None:
    assert validate_call_sid(SID) == SID


def test_resolve_inside_accepts_relative_and_absolute_paths(tmp_path: Path) -> None:
    inside = tmp_path / "recordings" / "a.wav"
    assert resolve_inside(tmp_path, inside) == inside.resolve()
    assert resolve_inside(tmp_path, "recordings/a.wav") == inside.resolve()


@pytest.mark.parametrize("escape", ["../x.wav", "recordings/../../x.wav", "/etc/passwd"])
def test_resolve_inside_refuses_escapes(tmp_path: Path, escape: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(StorageError, match="escapes"):
        resolve_inside(data, escape)


def test_resolve_inside_refuses_symlink_escapes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    outside = tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    (outside / "secret.wav").write_bytes(b"x")
    os.symlink(outside, data / "recordings")
    with pytest.raises(StorageError, match="escapes"):
        resolve_inside(data, "recordings/secret.wav")
