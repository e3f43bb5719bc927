"""Benchmark of each carrier's audio path, per 20 ms of call, each way, on this machine.

Run: .venv/bin/python bench/bench_carriers.py [--iterations N] [--write]

Inbound (carrier → bridge): one carrier media message, as that carrier's
simulator builds it (:mod:`phonebridge.simulators.phone.carriers`), through
the bridge's protocol module: JSON (or binary) parse, base64, codec (µ-law,
big-endian L16 swap …) to PCM16 at the leg's rate. Exotel sends 100 ms per
message; its figure is divided by 5. Outbound (bridge → carrier): 20 ms of
PCM16 through ``audio()`` (framing, codec, base64, JSON). Twilio's µ-law path
is the reference row. Figures are the median of N runs; the model side (Opus)
is in ``bench_audio.py`` and is the same for every carrier at a given rate.
``--write`` replaces the ``bench_carriers`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from report import machine, write_section

from phonebridge.audio.analysis import tone
from phonebridge.audio.g711 import pcm16_to_ulaw
from phonebridge.simulators.phone.carriers.base import CarrierWire
from phonebridge.simulators.phone.carriers.exotel import ExotelWire
from phonebridge.simulators.phone.carriers.plivo import PlivoWire
from phonebridge.simulators.phone.carriers.signalwire import SignalWireWire
from phonebridge.simulators.phone.carriers.telnyx import TelnyxWire
from phonebridge.simulators.phone.carriers.vonage import VonageWire
from phonebridge.simulators.phone.wire import TwilioStreamWriter
from phonebridge.telephony.exotel.protocol import ExotelStream
from phonebridge.telephony.plivo.protocol import PlivoStream
from phonebridge.telephony.signalwire.protocol import SignalWireStream
from phonebridge.telephony.stream import CarrierStream
from phonebridge.telephony.telnyx.protocol import TelnyxStream
from phonebridge.telephony.twilio.protocol import MediaStreamProtocol, media_message
from phonebridge.telephony.vonage.protocol import VonageStream

COMMAND = ".venv/bin/python bench/bench_carriers.py --write"


def median_us(step: Callable[[int], object], iterations: int) -> float:
    for i in range(min(200, iterations)):
        step(i)
    times = []
    for i in range(iterations):
        start = time.perf_counter_ns()
        step(i)
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


def pairs(rate: int) -> list[tuple[str, CarrierWire, CarrierStream]]:
    telnyx = TelnyxWire(
        rate=rate,
        codec="L16" if rate > 8_000 else "PCMU",
        out_codec="L16" if rate > 8_000 else "PCMU",
        out_rate=rate,
        rtp=True,
        call_control_id="v3:bench",
        from_number="",
        to_number="",
        client_state=None,
        auth_token=None,
    )
    plivo = PlivoWire(
        encoding="audio/x-l16",
        rate=rate,
        bidirectional=True,
        call_uuid="c",
        account_id="a",
        extra_headers="",
    )
    out = "L16" if rate > 8_000 else "PCMU"
    return [
        ("telnyx", telnyx, TelnyxStream(out_codec=out, out_rate=rate)),
        ("plivo", plivo, PlivoStream()),
        ("vonage", VonageWire(rate=rate, headers={"call_uuid": "u"}), VonageStream()),
        (
            "signalwire",
            SignalWireWire(rate=rate, call_sid="CA", account_sid="PJ"),
            SignalWireStream(),
        ),
        (
            "exotel",
            ExotelWire(rate=rate, call_sid="c", account_sid="a", from_="", to="", camel=False),
            ExotelStream(),
        ),
    ]


def measure(iterations: int) -> list[tuple[str, int, str, float, float]]:
    rows: list[tuple[str, int, str, float, float]] = []
    pcm8 = tone(440, 0.02, 8000, 9000)
    proto = MediaStreamProtocol()
    writer = TwilioStreamWriter("MZbench", "ACbench", "CAbench")
    proto.receive(writer.connected(), 0.0)
    proto.receive(writer.start({}), 0.0)
    frame = writer.media(pcm16_to_ulaw(pcm8), 0)
    inbound = median_us(lambda i: proto.receive(frame, 0.0), iterations)
    outbound = median_us(lambda i: media_message("MZbench", pcm16_to_ulaw(pcm8)), iterations)
    rows.append(("twilio", 8000, "µ-law", inbound, outbound))
    for rate in (8_000, 16_000):
        for name, wire, stream in pairs(rate):
            if name == "signalwire" and rate == 8_000:
                codec = "µ-law"
            elif name == "telnyx":
                codec = "L16 BE" if rate > 8_000 else "µ-law"
            elif name == "vonage":
                codec = "L16 binary"
            else:
                codec = "L16"
            for message in wire.opening({}):
                stream.receive(message, 0.0)
            rows.append((name, rate, codec, *per_20ms(wire, stream, rate, iterations)))
    return rows


def per_20ms(
    wire: CarrierWire, stream: CarrierStream, rate: int, iterations: int
) -> tuple[float, float]:
    """(in, out) µs per 20 ms, timed over 100 ms so framing carriers are fairly counted.

    Inbound: 100 ms of the carrier's media messages (5 of 20 ms, or Exotel's one
    of 100 ms). Outbound: five 20 ms pushes (Exotel and Vonage frame and hold).
    """
    pcm = tone(440, wire.frame_ms / 1000, rate, 9000)
    media = [wire.media(pcm, 0)] * (100 // wire.frame_ms)
    pcm20 = tone(440, 0.02, rate, 9000)

    def inbound(_: int) -> None:
        for message in media:
            stream.receive(message, 0.0)

    def outbound(_: int) -> None:
        for _push in range(5):
            stream.audio(pcm20)

    return median_us(inbound, iterations) / 5, median_us(outbound, iterations) / 5


def table(rows: list[tuple[str, int, str, float, float]]) -> str:
    lines = [
        "| carrier | leg rate | codec on the wire | in µs/20 ms | out µs/20 ms |",
        "|---|---:|---|---:|---:|",
    ]
    lines += [f"| {n} | {r} | {c} | {i:.1f} | {o:.1f} |" for n, r, c, i, o in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    rows = measure(args.iterations)
    text = table(rows)
    print(text)
    if args.write:
        write_section(
            "bench_carriers",
            "## Carrier audio paths (protocol parse + codec, per 20 ms)\n\n"
            f"`{COMMAND}` on {machine()}; median of {args.iterations} runs. Inbound: one "
            "carrier media message through the bridge's parser to PCM16 at the leg's rate "
            "(Exotel's 100 ms messages divided by 5); outbound: 20 ms of PCM16 to the "
            "carrier's frames. Excludes the model side (Opus, `bench_audio.py`).\n\n" + text,
        )


if __name__ == "__main__":
    main()
