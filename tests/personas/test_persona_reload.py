"""Hot reload: good edits go live, broken edits are rejected and the old book stays."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from phonebridge.personas import PersonaBook, PersonaError, PersonaStore
from phonebridge.personas.reload import directory_fingerprint

VALID = """\
name: Front desk
numbers: ["+14165550100"]
provider: personaplex
voice: NATF2
prompt: {prompt}
"""


def write(directory: Path, prompt: str = "You enjoy having a good conversation.") -> Path:
    path = directory / "desk.yaml"
    path.write_text(VALID.format(prompt=prompt), encoding="utf-8")
    return path


def bump_mtime(path: Path) -> None:
    # Filesystems with coarse timestamps could give an edit the same mtime.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


async def wait_until(condition: Callable[[], bool]) -> None:
    # Generous limit only to turn a hang into a failure; the store exposes no
    # event for "reloaded", so poll its state.
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def prompt_of(store: PersonaStore) -> str:
    return store.current.personas[0].prompt


def test_start_up_fails_loudly_on_broken_files(tmp_path: Path) -> None:
    (tmp_path / "desk.yaml").write_text("name: [")
    with pytest.raises(PersonaError):
        PersonaStore(tmp_path)


def test_good_edit_is_picked_up(tmp_path: Path) -> None:
    path = write(tmp_path)
    store = PersonaStore(tmp_path)
    assert not store.changed_on_disk()
    write(tmp_path, "Be brief.")
    bump_mtime(path)
    assert store.changed_on_disk()
    assert store.reload() is True
    assert prompt_of(store) == "Be brief."
    assert store.generation == 1
    assert store.last_error is None
    assert not store.changed_on_disk()


def test_broken_edit_is_rejected_logged_and_old_book_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path)
    store = PersonaStore(tmp_path)
    before = store.current
    path.write_text(VALID.format(prompt="ok").replace("NATF2", "NOPE"), encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="phonebridge.personas.reload"):
        assert store.reload() is False
    assert store.current is before
    assert store.generation == 0
    assert store.last_error is not None
    assert f"{path}:4: voice: unknown voice 'NOPE'" in caplog.text
    assert "previous 1 personas stay in force" in caplog.text
    # Fixing the file brings the new version in.
    write(tmp_path, "Fixed.")
    assert store.reload() is True
    assert prompt_of(store) == "Fixed."


def test_fingerprint_sees_add_remove_and_replace(tmp_path: Path) -> None:
    empty = directory_fingerprint(tmp_path)
    path = write(tmp_path)
    added = directory_fingerprint(tmp_path)
    assert added != empty
    replacement = tmp_path / "new.tmp"
    replacement.write_text(path.read_text(), encoding="utf-8")
    os.utime(replacement, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    replacement.replace(path)  # same name, size and mtime: only the inode differs
    assert directory_fingerprint(tmp_path) != added
    path.unlink()
    assert directory_fingerprint(tmp_path) == empty
    assert directory_fingerprint(tmp_path / "missing") == ()


async def test_watch_picks_up_a_good_edit_and_rejects_a_broken_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path)
    store = PersonaStore(tmp_path)
    stop = asyncio.Event()
    watcher = asyncio.create_task(store.watch(stop, interval=0.01))
    try:
        write(tmp_path, "Second version.")
        bump_mtime(path)
        await wait_until(lambda: store.generation == 1)
        assert prompt_of(store) == "Second version."

        with caplog.at_level(logging.ERROR, logger="phonebridge.personas.reload"):
            path.write_text("name: [broken", encoding="utf-8")
            await wait_until(lambda: store.last_error is not None)
            await asyncio.sleep(0.05)  # several more polls
        assert prompt_of(store) == "Second version."
        # Logged once per edit, not once per poll.
        assert caplog.text.count("persona reload rejected") == 1
    finally:
        stop.set()
        await asyncio.wait_for(watcher, timeout=5)
    assert watcher.done()


async def test_watch_returns_promptly_when_stopped(tmp_path: Path) -> None:
    write(tmp_path)
    store = PersonaStore(tmp_path)
    stop = asyncio.Event()
    watcher = asyncio.create_task(store.watch(stop, interval=3600))
    await asyncio.sleep(0)
    stop.set()
    await asyncio.wait_for(watcher, timeout=5)


async def test_sighup_reloads(tmp_path: Path) -> None:
    path = write(tmp_path)
    store = PersonaStore(tmp_path)
    loop = asyncio.get_running_loop()
    assert store.install_sighup(loop) is True
    try:
        write(tmp_path, "After SIGHUP.")
        bump_mtime(path)
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_until(lambda: store.generation == 1)
        assert prompt_of(store) == "After SIGHUP."
    finally:
        store.remove_sighup(loop)


def test_a_given_book_skips_the_initial_load(tmp_path: Path) -> None:
    write(tmp_path)
    book = PersonaStore(tmp_path).current
    calls: list[Path] = []

    def loader(directory: Path) -> PersonaBook:
        calls.append(directory)
        return book

    store = PersonaStore(tmp_path, book=book, loader=loader)
    assert store.current is book
    assert calls == []
    store.reload()
    assert calls == [tmp_path]
