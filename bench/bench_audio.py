"""Benchmark of the audio path, per 20 ms frame of call, on this machine.

Run: .venv/bin/python bench/bench_audio.py [--iterations N] [--no-write]

Prints µs per 20 ms frame (median of N timed runs) for each stage, each
direction and the total, plus an Opus complexity table, and replaces the
``## Audio path`` section of BENCHMARKS.md (between its markers).
"""

from __future__ import annotations

import argparse
import statistics
import time
import wave
from collections.abc import Callable
from pathlib import Path

import opuslib
import opuslib.api.encoder
from report import BENCHMARKS, ROOT, machine, write_section

from phonebridge.audio.analysis import best_lag, samples, tone
from phonebridge.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from phonebridge.audio.ogg import OggOpusReader, OggOpusWriter
from phonebridge.audio.opus import (
    DEFAULT_BITRATE,
    DEFAULT_COMPLEXITY,
    NARROWBAND,
    OpusDecoder,
    OpusEncoder,
)
from phonebridge.audio.resample import Downsampler24kTo8k, Upsampler8kTo24k

SPEECH_ASSETS = ("greeting", "reply1", "reply2")
SESSION_1_COMPLEXITY = 5  # the chain this project ran before the load work (issue 7)
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


def measure(iterations: int, complexity: int, *, line_rate_codec: bool) -> dict[str, float]:
    """µs per 20 ms for each stage of one chain.

    ``line_rate_codec``: the chain the bridge runs now (libopus encodes from
    and decodes to 8 kHz, narrowband: no resampler). Otherwise the chain of
    session 1 (24 kHz codec, full band, polyphase resamplers both ways),
    measured again for the before/after table.
    """
    rate = 8000 if line_rate_codec else 24000
    bandwidth = NARROWBAND if line_rate_codec else None
    frames_codec = speechlike_frames(rate, 250)
    frames24 = speechlike_frames(24000, 250)
    frames8 = [pcm16_to_ulaw(f) for f in speechlike_frames(8000, 250)]
    n = len(frames_codec)

    # Inputs for the later stages, made once with the project's own code.
    encoder = OpusEncoder(rate, complexity=complexity, max_bandwidth=bandwidth)
    packets20 = [encoder.encode(f) for f in frames_codec]
    writer = OggOpusWriter(serial=1, pre_skip=encoder.lookahead_48k, input_sample_rate=rate)
    headers = writer.headers()
    pages = [writer.write_packet(p) for p in packets20]
    # The server sends 80 ms full-band packets at 24 kHz: make some with libopus.
    state = opuslib.api.encoder.create_state(24000, 1, opuslib.APPLICATION_VOIP)
    pcm80 = [b"".join(frames24[i : i + 4]) for i in range(0, n - 3, 4)]
    packets80 = [bytes(opuslib.api.encoder.encode(state, p, 1920, 4000)) for p in pcm80]
    opuslib.api.encoder.destroy(state)

    up, down = Upsampler8kTo24k(), Downsampler24kTo8k()
    enc = OpusEncoder(rate, complexity=complexity, max_bandwidth=bandwidth)
    page_writer = OggOpusWriter(serial=2, pre_skip=312)
    page_writer.headers()
    reader = OggOpusReader()
    reader.push(headers)
    dec = OpusDecoder(rate)
    pcm8 = [ulaw_to_pcm16(f) for f in frames8]

    results = {
        "mu-law decode (160 B)": median_us(lambda i: ulaw_to_pcm16(frames8[i % n]), iterations)
    }
    if not line_rate_codec:
        results["upsample 8k->24k"] = median_us(lambda i: up.push(pcm8[i % n]), iterations)
    results["Opus encode 20 ms"] = median_us(lambda i: enc.encode(frames_codec[i % n]), iterations)
    results["Ogg page write"] = median_us(
        lambda i: page_writer.write_packet(packets20[i % n]), iterations
    )
    # Reading one page is the same work whatever its packet's duration: the
    # server sends one page per 80 ms, so a 20 ms share is a quarter of it.
    results["Ogg read (one page per 80 ms) /4"] = (
        median_us(lambda i: reader.push(pages[i % n]), iterations) / 4
    )
    results["Opus decode 80 ms /4"] = median_us(
        lambda i: dec.decode(packets80[i % len(packets80)]), iterations, per_call_frames=4
    )
    if not line_rate_codec:
        results["downsample 24k->8k"] = median_us(lambda i: down.push(frames24[i % n]), iterations)
    results["mu-law encode (160 samples)"] = median_us(
        lambda i: pcm16_to_ulaw(pcm8[i % n]), iterations
    )
    return results


SPEECH_FILES = [
    ROOT / "tests" / "audio" / "fixtures" / "speech_8k.ulaw",
    *(ROOT / "phonebridge" / "simulators" / "assets" / f"{name}.wav" for name in SPEECH_ASSETS),
]


def line_audio(path: Path) -> bytes:
    """A speech file as the phone line carries it: 8 kHz PCM through mu-law."""
    if path.suffix == ".ulaw":
        return ulaw_to_pcm16(path.read_bytes())
    with wave.open(str(path)) as wav:
        pcm24 = wav.readframes(wav.getnframes())
    down = Downsampler24kTo8k()
    return ulaw_to_pcm16(pcm16_to_ulaw(down.push(pcm24) + down.flush()))


def speech_pesq(complexity: int) -> str:
    """Mean PESQ-NB of the caller's speech as the model hears it, or "—" without pesq."""
    try:
        from pesq import pesq  # noqa: PLC0415 - optional: the `bench` extra
    except ImportError:
        return "—"
    scores = []
    for path in SPEECH_FILES:
        pcm8 = line_audio(path)
        encoder = OpusEncoder(8000, complexity=complexity)
        packets = [encoder.encode(pcm8[i : i + 320]) for i in range(0, len(pcm8) - 319, 320)]
        decoder = OpusDecoder(24000)
        heard = Downsampler24kTo8k().push(b"".join(decoder.decode(p) for p in packets))
        reference, test = samples(pcm8), samples(heard)
        test = test[best_lag(reference, test, 400) :]
        size = min(reference.size, test.size)
        scores.append(pesq(8000, reference[:size] / 32768.0, test[:size] / 32768.0, "nb"))
    return f"{sum(scores) / len(scores):.3f}"


INBOUND = ["mu-law decode (160 B)", "upsample 8k->24k", "Opus encode 20 ms", "Ogg page write"]
OUTBOUND = [
    "Ogg read (one page per 80 ms) /4",
    "Opus decode 80 ms /4",
    "downsample 24k->8k",
    "mu-law encode (160 samples)",
]


def report(iterations: int) -> str:
    before = measure(iterations, SESSION_1_COMPLEXITY, line_rate_codec=False)
    now = measure(iterations, DEFAULT_COMPLEXITY, line_rate_codec=True)

    def cell(stages: dict[str, float], name: str) -> str:
        return f"{stages[name]:.1f}" if name in stages else "—"

    def total(stages: dict[str, float], names: list[str]) -> float:
        return sum(stages.get(name, 0.0) for name in names)

    lines = [
        "## Audio path",
        "",
        f"Reproduce: `{COMMAND} --iterations {iterations}` — {machine()}; single thread,",
        f"median of {iterations} runs, µs per 20 ms frame of call; Opus complexity "
        f"{DEFAULT_COMPLEXITY}, {DEFAULT_BITRATE} b/s.",
        "",
        f"*Session 1*: the codec at 24 kHz, full band, complexity {SESSION_1_COMPLEXITY},",
        "with the polyphase resamplers both ways. *Now*: libopus encodes the line's",
        f"8 kHz directly (narrowband, complexity {DEFAULT_COMPLEXITY}: the line has nothing",
        "above 4 kHz) and decodes the model's replies straight to 8 kHz, so no",
        "resampler runs (fal alone still needs them).",
        "",
        "| stage | session 1 | now |",
        "|---|---:|---:|",
    ]
    for names, label in (
        (INBOUND, "inbound (phone -> model)"),
        (OUTBOUND, "outbound (model -> phone)"),
    ):
        lines += [f"| {name} | {cell(before, name)} | {cell(now, name)} |" for name in names]
        lines.append(
            f"| **{label}** | **{total(before, names):.1f}** | **{total(now, names):.1f}** |"
        )
    both_before = total(before, INBOUND + OUTBOUND)
    both_now = total(now, INBOUND + OUTBOUND)
    verdict = "within" if both_now <= 300 else "OVER"
    lines.append(
        f"| **both directions** | **{both_before:.1f}** | **{both_now:.1f}**"
        f" ({verdict} the 300 µs target) |"
    )
    lines += [
        "",
        "Opus encode at 8 kHz, narrowband, by complexity: µs per 20 ms frame, and",
        "PESQ-NB (mean of four speech files, decoded at 24 kHz as the model does,",
        "compared at 8 kHz; needs the `bench` extra's `pesq`):",
        "",
        "| complexity | encode µs | PESQ-NB |",
        "|---:|---:|---:|",
    ]
    frames = speechlike_frames(8000, 250)
    for complexity in (0, 1, 3, 5, 6, 8, 10):
        encoder = OpusEncoder(8000, complexity=complexity)

        def step(i: int, encoder: OpusEncoder = encoder) -> bytes:
            return encoder.encode(frames[i % len(frames)])

        us = median_us(step, iterations)
        lines.append(f"| {complexity} | {us:.1f} | {speech_pesq(complexity)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    section = report(args.iterations)
    print(section)
    if not args.no_write:
        write_section("bench_audio", section)
        print(f"\nwrote the Audio path section of {BENCHMARKS}")


if __name__ == "__main__":
    main()
