"""A real PostgreSQL server on a temporary cluster, on loopback, for tests.

The Debian ``postgresql`` package puts its binaries under
``/usr/lib/postgresql/<major>/bin`` (not on PATH); the newest major there is
used. PostgreSQL refuses to run as root, and CI runs as root, so as root the
cluster belongs to the ``postgres`` system user the package creates and every
binary runs through ``runuser -u postgres``; as anyone else it runs as that
user. The data directory is a fresh ``mkdtemp`` under the system temporary
directory (pytest's own temporary directories are private to root, so the
``postgres`` user could not reach into them).

The server listens on 127.0.0.1 only, on a free port, with no Unix socket in
a shared place (the socket lives in the data directory) and ``trust``
authentication: nothing beyond loopback can reach it, and it is deleted at
the end. One server per test session; each test gets its own database.

Use::

    from tests.realservers.postgres_server import postgres_server, postgres_url
    # in a conftest.py: both are pytest fixtures; ``postgres_url`` is a fresh
    # empty database per test (``postgresql://phonebridge@127.0.0.1:PORT/tN``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .ports import free_port

PG_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "phonebridge"
START_TIMEOUT = 30.0


def find_bin_dir() -> Path:
    """The newest installed PostgreSQL's bin directory; fails with how to install it."""
    majors = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "postgres").is_file()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not majors:
        pytest.fail(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): "
            "run deploy/bootstrap.sh --test, or apt-get install postgresql"
        )
    return majors[-1]


class PostgresServer:
    """One ``postgres`` process on a throw-away cluster; :meth:`stop` removes it all."""

    def __init__(self) -> None:
        self.bin_dir = find_bin_dir()
        self.run_as: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root, but there is no 'postgres' user to run PostgreSQL")
            self.run_as = "postgres"
        self.base = Path(tempfile.mkdtemp(prefix="phonebridge-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        if self.run_as is not None:
            shutil.chown(self.base, user=self.run_as)

    def _command(self, binary: str, *args: str) -> list[str]:
        command = [str(self.bin_dir / binary), *args]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return command

    def start(self) -> None:
        """Create the cluster (first time only) and start the server; returns when it answers.

        After :meth:`shutdown`, this starts the same cluster again on the same
        port (its data kept), as an operator restarting PostgreSQL would.
        """
        if not self.data.exists():
            self._initdb()
        self._launch()

    def _initdb(self) -> None:
        subprocess.run(
            self._command(
                "initdb",
                "--pgdata",
                str(self.data),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-sync",  # a test cluster: speed over durability
            ),
            check=True,
            capture_output=True,
            cwd=self.base,
        )

    def _launch(self) -> None:
        self.log = self.base / "server.log"
        self.log.touch()
        if self.run_as is not None:
            shutil.chown(self.log, user=self.run_as)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self._command(
                    "postgres",
                    "-D",
                    str(self.data),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.data),  # the Unix socket stays in the private data dir
                    "-c",
                    "fsync=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "synchronous_commit=off",
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited at start:\n{self.log.read_text()[-2000:]}")
            ready = subprocess.run(
                self._command("pg_isready", "-h", "127.0.0.1", "-p", str(self.port)),
                capture_output=True,
                check=False,
            )
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not ready:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with psql; returns its unaligned output."""
        done = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ],
            capture_output=True,
            check=False,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"t{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def shutdown(self) -> None:
        """Stop the server, keeping its data (:meth:`start` brings it back)."""
        if self.process is None:
            return
        # Signal the postmaster itself (its pid is the first line of
        # postmaster.pid): runuser, our direct child, does not pass SIGINT on.
        # SIGINT is PostgreSQL's "fast" shutdown: clients are cut, not awaited.
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        """Stop the server and delete the cluster."""
        self.shutdown()
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the test session."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's PostgreSQL."""
    return postgres_server.create_database()
