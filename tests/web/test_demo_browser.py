"""``phonebridge demo --browser``: the bridge with simulators, and the Talk page's URL."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import httpx

from ..conftest import REPO


async def test_demo_browser_prints_a_working_talk_url(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHONEBRIDGE_", "TWILIO_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "phonebridge.cli",
        "demo",
        "--browser",
        "--personas",
        str(REPO / "personas"),
        "--data",
        str(tmp_path / "data"),
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = (await process.stdout.readline()).decode()
        match = re.fullmatch(r"Talk page: (http://127\.0\.0\.1:\d+/talk\?persona=citysan)\n", line)
        assert match, line
        async with httpx.AsyncClient() as http:
            page = await http.get(match.group(1))
        assert page.status_code == 200
        assert 'id="talk"' in page.text
        assert "citysan" in page.text
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            await process.wait()
    assert process.returncode == 0
