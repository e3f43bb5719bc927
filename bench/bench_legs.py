"""Benchmark: a 24 kHz browser leg next to an 8 kHz Twilio leg, per 20 ms each way.

Run: .venv/bin/python bench/bench_legs.py [--iterations N] [--seconds S] [--no-write]

Two parts:

1. The leg's own processing per 20 ms frame (median of N runs, one thread):
   inbound = the leg's parsing/decoding + the model client's encoding (Ogg/Opus
   from the leg's rate); outbound = decoding the model's 80 ms page to the
   leg's rate + the leg's encoding for its wire. From these, the codec and
   protocol CPU per call-second (x50 frames each way; sockets and the event
   loop excluded).
2. The bridge's own histograms (``phonebridge_frame_processing_seconds``, the
   figure the load bench reports for Twilio) after one real call of each kind
   through the real bridge on loopback: the Twilio phone simulator, and a
   WebSocket client speaking the Talk page's protocol at 24 kHz.

Replaces the ``## Browser leg`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from report import ROOT, machine, write_section
from websockets.asyncio.client import connect

from phonebridge.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from phonebridge.local import DEMO_AUTH_TOKEN, LocalBridge, SimulatorOptions, local_bridge
from phonebridge.metrics import BridgeMetrics
from phonebridge.models.personaplex_protocol import Kind, OggStreamProtocol
from phonebridge.simulators.personaplex.server_ogg import ServerOggWriter
from phonebridge.simulators.phone.dial import dial
from phonebridge.telephony.twilio.protocol import MediaStreamProtocol, media_message
from phonebridge.web.softphone.protocol import BrowserStream

TOKEN = "bench-token"


def speech_like(rate: int, seconds: float) -> bytes:
    """A tone sweep with syllable-like bursts: keeps the encoder honest."""
    t = np.arange(int(rate * seconds)) / rate
    sweep = np.sin(2 * np.pi * (300 + 2500 * (t % 1.0)) * t)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    return (sweep * envelope * 0.3 * 32767).astype("<i2").tobytes()


def median_us(run: Callable[[], None], iterations: int) -> float:
    times = []
    for _ in range(iterations):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def ready(rate: int) -> OggStreamProtocol:
    protocol = OggStreamProtocol(sample_rate=rate)
    protocol.receive(bytes([Kind.HANDSHAKE]))
    writer = ServerOggWriter()
    protocol.receive(bytes([Kind.AUDIO]) + writer.headers())
    return protocol


def server_pages(count: int) -> list[bytes]:
    writer = ServerOggWriter()
    writer.headers()
    pcm = speech_like(24000, count * 0.08)
    step = 1920 * 2
    return [bytes([Kind.AUDIO]) + writer.step(pcm[i * step : (i + 1) * step]) for i in range(count)]


def leg_costs(iterations: int) -> dict[str, float]:
    """µs per 20 ms frame, each leg and direction."""
    frames = 250  # 5 s of call per timed run
    out: dict[str, float] = {}
    pages = server_pages(frames // 4)

    # Twilio, 8 kHz mu-law
    mulaw = pcm16_to_ulaw(speech_like(8000, frames * 0.02))
    stream = MediaStreamProtocol()
    stream.receive(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}), 0)
    stream.receive(
        json.dumps(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": "MZ" + "0" * 32,
                "start": {
                    "streamSid": "MZ" + "0" * 32,
                    "accountSid": "AC" + "0" * 32,
                    "callSid": "CA" + "0" * 32,
                    "tracks": ["inbound"],
                    "customParameters": {},
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        ),
        0,
    )
    messages = [
        json.dumps(
            {
                "event": "media",
                "sequenceNumber": str(n + 2),
                "streamSid": "MZ" + "0" * 32,
                "media": {
                    "track": "inbound",
                    "chunk": str(n + 1),
                    "timestamp": str(n * 20),
                    "payload": __import__("base64")
                    .b64encode(mulaw[n * 160 : (n + 1) * 160])
                    .decode(),
                },
            }
        )
        for n in range(frames)
    ]

    def twilio_in() -> None:
        protocol = ready(8000)
        for n, message in enumerate(messages):
            event = stream.receive(message, n * 0.02)
            protocol.encode_audio(ulaw_to_pcm16(event.payload))  # type: ignore[union-attr]

    def twilio_out() -> None:
        protocol = ready(8000)
        for page in pages:
            for event in protocol.receive(page):
                media_message("MZ" + "0" * 32, pcm16_to_ulaw(event.pcm))  # type: ignore[union-attr]

    pcm24 = speech_like(24000, frames * 0.02)
    chunks = [pcm24[n * 960 : (n + 1) * 960] for n in range(frames)]

    def browser_in() -> None:
        protocol = ready(24000)
        browser = BrowserStream()
        browser.receive('{"type":"start","sampleRate":24000}', 0.0)
        for n, chunk in enumerate(chunks):
            event = browser.receive(chunk, n * 0.02)
            protocol.encode_audio(event.pcm)  # type: ignore[union-attr]

    def browser_out() -> None:
        protocol = ready(24000)
        for page in pages:
            protocol.receive(page)  # the PCM goes to the page as it is

    for name, run in (
        ("twilio inbound", twilio_in),
        ("twilio outbound", twilio_out),
        ("browser inbound", browser_in),
        ("browser outbound", browser_out),
    ):
        out[name] = median_us(run, iterations) / frames
    return out


def histogram_means(metrics: BridgeMetrics) -> dict[str, float]:
    means: dict[str, float] = {}
    for metric in metrics.frame_processing.collect():
        sums = {s.labels["direction"]: s.value for s in metric.samples if s.name.endswith("_sum")}
        counts = {
            s.labels["direction"]: s.value for s in metric.samples if s.name.endswith("_count")
        }
        for direction, total in sums.items():
            if counts.get(direction):
                means[direction] = total / counts[direction] * 1e6
    return means


async def twilio_call(bridge: LocalBridge, seconds: float) -> None:
    await dial(
        bridge.url,
        to="+14165550101",
        from_="+15005550006",
        auth_token=DEMO_AUTH_TOKEN,
        public_url=bridge.public_url,
        audio=pcm16_to_ulaw(speech_like(8000, seconds)),
        tail=0.5,
    )


async def browser_call(bridge: LocalBridge, seconds: float) -> None:
    async with httpx.AsyncClient(auth=("bench", TOKEN)) as http:
        ticket = (
            await http.post(bridge.url + "/api/talk/tickets", json={"persona": "citysan"})
        ).json()
    url = "ws://" + bridge.url.removeprefix("http://") + ticket["socket_path"]
    pcm = speech_like(24000, seconds)
    async with connect(url) as ws:
        await ws.send('{"type":"start","sampleRate":24000}')
        await ws.recv()
        started = time.monotonic()
        for n in range(len(pcm) // 960):
            await ws.send(pcm[n * 960 : (n + 1) * 960])
            await asyncio.sleep(max(0.0, started + (n + 1) * 0.02 - time.monotonic()))
        await ws.send('{"type":"hangup"}')
        async for _ in ws:
            pass


async def bridge_histograms(seconds: float) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, place in (("twilio", twilio_call), ("browser", browser_call)):
            async with local_bridge(
                personas_dir=ROOT / "personas",
                data_dir=Path(tmp) / name,
                simulators=SimulatorOptions(reply="echo", conditioning_delay=0.05),
                dashboard_token=TOKEN,
            ) as bridge:
                await place(bridge, seconds)
                await asyncio.sleep(0.5)
                results[name] = histogram_means(bridge.app.state.deps.bridge.metrics)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each real call")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    costs = leg_costs(args.iterations)
    histograms = asyncio.run(bridge_histograms(args.seconds))
    lines = [
        "## Browser leg",
        "",
        f"`bench/bench_legs.py --iterations {args.iterations} --seconds {args.seconds:g}` on "
        f"{machine()}.",
        "",
        "Leg + model-client processing per 20 ms frame (µs, median), and the codec/protocol "
        "CPU per call-second it implies (both directions x 50 frames; sockets and event loop "
        "excluded):",
        "",
        "| leg | inbound µs/20 ms | outbound µs/20 ms | CPU ms per call-second |",
        "|---|---|---|---|",
    ]
    for leg in ("twilio", "browser"):
        inbound, outbound = costs[f"{leg} inbound"], costs[f"{leg} outbound"]
        rate = "8 kHz mu-law" if leg == "twilio" else "24 kHz PCM"
        lines.append(
            f"| {leg} ({rate}) | {inbound:.0f} | {outbound:.0f} | "
            f"{(inbound + outbound) * 50 / 1000:.1f} |"
        )
    lines += [
        "",
        f"The bridge's own histogram (`phonebridge_frame_processing_seconds`, mean µs per 20 ms "
        f"frame) after one {args.seconds:g} s call of each kind through the real bridge:",
        "",
        "| leg | inbound | outbound |",
        "|---|---|---|",
    ]
    for leg, means in histograms.items():
        lines.append(f"| {leg} | {means.get('inbound', 0):.0f} | {means.get('outbound', 0):.0f} |")
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        write_section("browser-leg", section)


if __name__ == "__main__":
    main()
