"""Benchmark of the audio path, per 20 ms frame of call, on this machine.

Run: .venv/bin/python bench/bench_audio.py [--iterations N] [--no-write]

Prints µs per 20 ms frame (median of N timed runs) for each stage, each
direction and the total, plus an Opus complexity table, and replaces the
``## Audio path`` section of BENCHMARKS.md (between its markers).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import opuslib
import opuslib.api.encoder

from phonebridge.audio.analysis import tone
from phonebridge.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from phonebridge.audio.ogg import OggOpusReader, OggOpusWriter
from phonebridge.audio.opus import DEFAULT_BITRATE, DEFAULT_COMPLEXITY, OpusDecoder, OpusEncoder
from phonebridge.audio.resample import Downsampler24kTo8k, Upsampler8kTo24k

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- bench_audio:start -->", "<!-- bench_audio:end -->"
COMMAND = ".venv/bin/python bench/bench_audio.py"


def median_us(
    step: Callable[[int], object], iterations: int, per_call_frames: float = 1.0
) -> float:
    """Median µs per 20 ms frame of ``step(i)`` over ``iterations`` calls."""
    for i in range(min(200, iterations)):  # warm caches and libopus state
        step(i)
    times = []
    for i in range(iterations):
        start = time.perf_counter_ns()
        step(i)
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000 / per_call_frames


def speechlike_frames(rate: int, count: int) -> list[bytes]:
    """Distinct 20 ms frames of a gliding two-tone signal (not silence: codecs skip that)."""
    size = rate // 50
    pcm = b"".join(tone(200 + 37 * (i % 50), 0.02, rate, 9000) for i in range(count))
    return [pcm[2 * size * i : 2 * size * (i + 1)] for i in range(count)]


def measure(iterations: int, complexity: int) -> dict[str, float]:
    frames24 = speechlike_frames(24000, 250)
    frames8 = [pcm16_to_ulaw(f) for f in speechlike_frames(8000, 250)]
    n = len(frames24)

    # Inputs for the later stages, made once with the project's own code.
    encoder = OpusEncoder(complexity=complexity, bitrate=DEFAULT_BITRATE)
    packets20 = [encoder.encode(f) for f in frames24]
    writer = OggOpusWriter(serial=1, pre_skip=encoder.lookahead_48k)
    headers = writer.headers()
    pages = [writer.write_packet(p) for p in packets20]
    # The server sends 80 ms packets: make some with libopus directly.
    state = opuslib.api.encoder.create_state(24000, 1, opuslib.APPLICATION_VOIP)
    pcm80 = [b"".join(frames24[i : i + 4]) for i in range(0, n - 3, 4)]
    packets80 = [bytes(opuslib.api.encoder.encode(state, p, 1920, 4000)) for p in pcm80]
    opuslib.api.encoder.destroy(state)

    up, down = Upsampler8kTo24k(), Downsampler24kTo8k()
    enc = OpusEncoder(complexity=complexity, bitrate=DEFAULT_BITRATE)
    page_writer = OggOpusWriter(serial=2, pre_skip=312)
    page_writer.headers()
    reader = OggOpusReader()
    reader.push(headers)
    dec = OpusDecoder()
    pcm8 = [ulaw_to_pcm16(f) for f in frames8]

    results = {
        "mu-law decode (160 B)": median_us(lambda i: ulaw_to_pcm16(frames8[i % n]), iterations),
        "upsample 8k->24k": median_us(lambda i: up.push(pcm8[i % n]), iterations),
        "Opus encode 20 ms": median_us(lambda i: enc.encode(frames24[i % n]), iterations),
        "Ogg page write": median_us(
            lambda i: page_writer.write_packet(packets20[i % n]), iterations
        ),
        "Ogg read (one page per 80 ms) /4": median_us(
            lambda i: reader.push(pages[i % n]), iterations
        ),
        "Opus decode 80 ms /4": median_us(
            lambda i: dec.decode(packets80[i % len(packets80)]), iterations, per_call_frames=4
        ),
        "downsample 24k->8k": median_us(lambda i: down.push(frames24[i % n]), iterations),
        "mu-law encode (160 samples)": median_us(lambda i: pcm16_to_ulaw(pcm8[i % n]), iterations),
    }
    # Reading one page is the same work whatever its packet's duration: the
    # server sends one page per 80 ms, so a 20 ms share is a quarter of it.
    results["Ogg read (one page per 80 ms) /4"] /= 4
    return results


INBOUND = ["mu-law decode (160 B)", "upsample 8k->24k", "Opus encode 20 ms", "Ogg page write"]
OUTBOUND = [
    "Ogg read (one page per 80 ms) /4",
    "Opus decode 80 ms /4",
    "downsample 24k->8k",
    "mu-law encode (160 samples)",
]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, nproc={os.cpu_count()}, Python {platform.python_version()}"


def report(iterations: int) -> str:
    stages = measure(iterations, DEFAULT_COMPLEXITY)
    inbound = sum(stages[k] for k in INBOUND)
    outbound = sum(stages[k] for k in OUTBOUND)
    lines = [
        "## Audio path",
        "",
        f"Reproduce: `{COMMAND} --iterations {iterations}` — {machine()}; single thread,",
        f"median of {iterations} runs, µs per 20 ms frame of call; Opus complexity "
        f"{DEFAULT_COMPLEXITY}, {DEFAULT_BITRATE} b/s.",
        "",
        "| stage | µs / 20 ms |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {stages[name]:.1f} |" for name in INBOUND]
    lines.append(f"| **inbound (phone -> model)** | **{inbound:.1f}** |")
    lines += [f"| {name} | {stages[name]:.1f} |" for name in OUTBOUND]
    lines.append(f"| **outbound (model -> phone)** | **{outbound:.1f}** |")
    verdict = "within" if inbound + outbound <= 300 else "OVER"
    lines.append(
        f"| **both directions** | **{inbound + outbound:.1f}** ({verdict} the 300 µs target) |"
    )
    lines += [
        "",
        "Opus encode by complexity (µs per 20 ms frame):",
        "",
        "| complexity | encode µs |",
        "|---:|---:|",
    ]
    frames = speechlike_frames(24000, 250)
    for complexity in (0, 3, 5, 6, 8, 10):
        encoder = OpusEncoder(complexity=complexity)

        def step(i: int, encoder: OpusEncoder = encoder) -> bytes:
            return encoder.encode(frames[i % len(frames)])

        us = median_us(step, iterations)
        lines.append(f"| {complexity} | {us:.1f} |")
    return "\n".join(lines)


def write_section(section: str, path: Path) -> None:
    block = f"{START}\n{section}\n{END}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if START in text and END in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    section = report(args.iterations)
    print(section)
    if not args.no_write:
        write_section(section, ROOT / "BENCHMARKS.md")
        print(f"\nwrote the Audio path section of {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
