"""Pick up persona edits without a restart (issue 4, "Personas").

:class:`PersonaStore` holds the book in force. :meth:`PersonaStore.reload` loads
the directory again and swaps the new book in whole; a broken edit is rejected,
logged with ``file:line``, and the previous book stays in force. Two triggers:

- :meth:`PersonaStore.watch` polls the directory's fingerprint — each file's
  (name, inode, mtime_ns, size) — every few seconds. Polling rather than
  inotify because Kubernetes updates a mounted ConfigMap by re-pointing a
  ``..data`` symlink: the files users see never get a write event, but their
  ``stat()`` (which follows the symlink) changes. It also needs no extra
  dependency and behaves the same on every OS and filesystem (NFS included).
  Reading a handful of small files inline costs well under a millisecond of
  event-loop time.
- :meth:`PersonaStore.install_sighup` reloads on ``SIGHUP``, the daemon
  convention (``systemctl reload``, ``kill -HUP``).

A call that already started keeps the :class:`~.schema.Persona` it was routed
to; only new calls see the new book.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from .book import PersonaBook, PersonaError
from .loader import load_personas, persona_files

Fingerprint = tuple[tuple[str, int, int, int], ...]

_module_logger = logging.getLogger(__name__)


def directory_fingerprint(directory: Path) -> Fingerprint:
    """What changes whenever a persona file is added, removed, replaced or edited.

    The inode catches an atomic rename of a same-size file within the
    filesystem's mtime granularity. An unreadable directory has the empty
    fingerprint, so it reads as a change (and the reload reports why).
    """
    entries: list[tuple[str, int, int, int]] = []
    try:
        paths = persona_files(directory)
    except OSError:
        return ()
    for path in paths:
        try:
            stat = path.stat()
        except OSError:  # removed between listing and stat: the next poll sees it
            continue
        entries.append((path.name, stat.st_ino, stat.st_mtime_ns, stat.st_size))
    return tuple(entries)


class PersonaStore:
    """The persona book in force, reloaded on change. One per process, passed in."""

    def __init__(
        self,
        directory: Path,
        *,
        book: PersonaBook | None = None,
        logger: logging.Logger | None = None,
        loader: Callable[[Path], PersonaBook] = load_personas,
    ) -> None:
        """Load ``directory`` now (raising :class:`PersonaError`: start-up must fail
        loudly) unless an already loaded ``book`` is given."""
        self.directory = directory
        self._log = logger or _module_logger
        self._load = loader
        self._fingerprint = directory_fingerprint(directory)
        self._book = book if book is not None else loader(directory)
        self.generation = 0
        """Bumped on each successful reload: lets the dashboard show that an edit took."""
        self.last_error: PersonaError | None = None
        """Why the last reload was rejected; ``None`` once a reload succeeds."""

    @property
    def current(self) -> PersonaBook:
        return self._book

    def reload(self) -> bool:
        """Load the directory again; True if the new book is now in force.

        On a broken edit the previous book stays, every problem is logged as
        ``file:line: message``, and False is returned.
        """
        # Fingerprint *before* reading: if a file changes while we read it, the
        # next poll sees a different fingerprint and reloads again.
        self._fingerprint = directory_fingerprint(self.directory)
        try:
            book = self._load(self.directory)
        except PersonaError as exc:
            self.last_error = exc
            self._log.error(
                "persona reload rejected; the previous %d personas stay in force:\n%s",
                len(self._book.personas),
                exc,
            )
            return False
        self._book = book
        self.generation += 1
        self.last_error = None
        self._log.info(
            "personas reloaded from %s: %s",
            self.directory,
            ", ".join(persona.id for persona in book.personas),
        )
        return True

    def changed_on_disk(self) -> bool:
        """Whether the directory differs from what the last (attempted) load read."""
        return directory_fingerprint(self.directory) != self._fingerprint

    async def watch(self, stop: asyncio.Event, *, interval: float = 2.0) -> None:
        """Poll every ``interval`` seconds and reload on change, until ``stop`` is set.

        A rejected edit is logged once, not on every poll: the fingerprint is
        remembered either way, so only the next edit triggers another attempt.
        """
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
            if stop.is_set():
                return
            if self.changed_on_disk():
                self.reload()

    def install_sighup(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Reload on SIGHUP. False where the platform has no SIGHUP (Windows).

        The handler runs in the event loop (``add_signal_handler``), not in a
        raw signal context, so it may log and swap the book safely.
        """
        sighup = getattr(signal, "SIGHUP", None)
        if sighup is None:
            return False
        loop.add_signal_handler(sighup, self._on_sighup)
        return True

    def remove_sighup(self, loop: asyncio.AbstractEventLoop) -> None:
        sighup = getattr(signal, "SIGHUP", None)
        if sighup is not None:
            loop.remove_signal_handler(sighup)

    def _on_sighup(self) -> None:
        self._log.info("SIGHUP: reloading personas from %s", self.directory)
        self.reload()
