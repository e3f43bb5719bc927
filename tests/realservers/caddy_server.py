"""A real Caddy (Debian's ``caddy`` binary) on loopback, for tests.

The Caddyfile is written to a temporary directory and run with ``caddy run``;
Caddy's data and config directories point there too, so nothing outside the
test's directory is touched. The admin API is off and automatic HTTPS is off
(plain http on 127.0.0.1): TLS is not what these tests are about, routing is.
``start()`` returns once the listening port accepts connections; ``stop()``
ends only the process it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .ports import free_port

STARTUP_SECONDS = 15.0

GLOBAL_OPTIONS = """{
	admin off
	auto_https off
}
"""


def caddy_binary() -> str:
    found = shutil.which("caddy")
    if found is None:
        # deploy/bootstrap.sh --test installs it; a missing binary is a broken
        # machine, not a reason to skip the cluster tests.
        raise RuntimeError("caddy is not installed: run deploy/bootstrap.sh --test")
    return found


async def run_caddy(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """``caddy <args>`` (validate, adapt, ...): its exit code and combined output."""
    process = await asyncio.create_subprocess_exec(
        caddy_binary(),
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


@dataclass
class CaddyServer:
    """``caddy run`` with ``site`` (the site blocks) under test-friendly global options."""

    site: str
    directory: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def caddyfile(self) -> Path:
        return self.directory / "Caddyfile"

    @property
    def log_path(self) -> Path:
        return self.directory / "caddy.log"

    async def start(self) -> CaddyServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.caddyfile.write_text(GLOBAL_OPTIONS + "\n" + self.site)
        env = {
            **os.environ,
            "HOME": str(self.directory),
            "XDG_DATA_HOME": str(self.directory / "data"),
            "XDG_CONFIG_HOME": str(self.directory / "config"),
            **self.env,
        }
        code, output = await run_caddy(
            "validate", "--config", str(self.caddyfile), "--adapter", "caddyfile", env=env
        )
        if code != 0:
            raise RuntimeError(f"caddy refused the test Caddyfile:\n{output}")
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                caddy_binary(),
                *("run", "--config", str(self.caddyfile), "--adapter", "caddyfile"),
                env=env,
                stdout=log,
                stderr=log,
            )
        async with asyncio.timeout(STARTUP_SECONDS):
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"caddy exited at start:\n{self.log_path.read_text()}")
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return self

    async def stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
