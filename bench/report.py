"""Shared by the benchmarks: the machine line and BENCHMARKS.md's marked sections.

Each benchmark owns one section of BENCHMARKS.md between its own
``<!-- name:start -->`` / ``<!-- name:end -->`` markers and replaces only that,
so benchmarks run at different times (and by different people) never
overwrite each other's figures.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"


def machine() -> str:
    """CPU model, cores and Python version: what the figures depend on."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, nproc={os.cpu_count()}, Python {platform.python_version()}"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def write_section(name: str, section: str, path: Path = BENCHMARKS) -> None:
    """Replace the ``name`` section of ``path`` (appended at the end if missing)."""
    start, end = markers(name)
    block = f"{start}\n{section.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        # A function replacement: the section may contain backslashes.
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
