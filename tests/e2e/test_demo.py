"""`phonebridge demo` (the README's first command) works and says where things are.

Its output is a summary a person reads: no uvicorn access lines or INFO logs
unless ``--verbose`` asks for them. Both runs go at once (each is a real
15-second call, mostly waiting).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

ACCESS_LINE = re.compile(r'"(GET|POST) /twilio/\S+ HTTP/1\.1" \d{3}')
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|DEBUG) ", re.MULTILINE)


def start_demo(data: Path, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "phonebridge.cli", "demo", "--data", str(data), *options],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_demo_call_works_end_to_end_with_a_clean_summary(tmp_path: Path) -> None:
    quiet = start_demo(tmp_path / "quiet")
    verbose = start_demo(tmp_path / "verbose", "--verbose")
    out, err = quiet.communicate(timeout=120)
    verbose_out, verbose_err = verbose.communicate(timeout=120)
    assert quiet.returncode == 0, err[-2000:]
    assert verbose.returncode == 0, verbose_err[-2000:]

    assert "demo OK" in out
    recording = next(line for line in out.splitlines() if line.startswith("recording:"))
    transcript = next(line for line in out.splitlines() if line.startswith("transcript:"))
    assert Path(recording.split(":", 1)[1].strip()).is_file()
    assert Path(transcript.split(":", 1)[1].strip()).is_file()
    assert "agent said: Hello, thanks for calling." in out
    assert re.search(r"call CA[0-9a-f]{32}: caller_hangup, ended by the caller after", out)
    assert "dashboard:" in out
    # Clean: no access lines and no INFO logs anywhere, only the summary.
    for stream in (out, err):
        assert not ACCESS_LINE.search(stream), stream[-2000:]
        assert not LOG_LINE.search(stream), stream[-2000:]
    assert err.strip() == ""
    assert len(out.splitlines()) < 20

    # --verbose: the same summary, and the logs it hid.
    assert "demo OK" in verbose_out
    assert "agent said: Hello, thanks for calling." in verbose_out
    assert ACCESS_LINE.search(verbose_err), verbose_err[-2000:]
    assert re.search(r" INFO uvicorn\.access: ", verbose_err)
    assert re.search(r" INFO phonebridge\.", verbose_err)
