"""`phonebridge demo` (the README's first command) works and says where things are."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import REPO


def test_demo_call_works_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "phonebridge.cli", "demo", "--data", str(tmp_path / "data")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "demo OK" in out
    recording = next(line for line in out.splitlines() if line.startswith("recording:"))
    transcript = next(line for line in out.splitlines() if line.startswith("transcript:"))
    assert Path(recording.split(":", 1)[1].strip()).is_file()
    assert Path(transcript.split(":", 1)[1].strip()).is_file()
    assert "agent said: Hello, thanks for calling." in out
    assert "dashboard:" in out
