"""Personal calls (issue 15): what the context lookup adds, and what answering when ready saves.

Run:
  .venv/bin/python bench/bench_personal.py context [--calls 200]
  .venv/bin/python bench/bench_personal.py ready [--calls 10] [--conditioning 2.0]

``context``: the voice webhook's latency (signed POST to the answer, on
loopback, answer_within 0 so only the webhook's own work counts) for a persona
without a context webhook and for the same persona with one (the webhook
receiver test double answering at once on loopback). Prints p50/p99 of each
and of the difference. A real CRM adds its own latency on top, bounded by the
persona's ``timeout_ms``.

``ready``: whole calls through the phone simulator with the PersonaPlex
simulator conditioning for ``--conditioning`` seconds, answered at once
(``answer_within 0``) and held until the model is ready (``answer_within 5``).
Prints the caller's silence after answer (stream start to model ready, from
the call rows) and the model-socket seconds spent before the stream started
(while the phone rang), p50/p95.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from phonebridge.local import DEMO_AUTH_TOKEN, SimulatorOptions, local_bridge
from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.webhook_receiver import WebhookReceiver
from phonebridge.storage.index import CallIndex
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign

ROOT = Path(__file__).resolve().parents[1]
SHAKSHUKA = "+14165550102"
SECRET = "bench-secret"
NO_GUARD: dict[str, Any] = {
    "caller_max_calls_per_hour": 0,
    "caller_max_concurrent": 0,
    "max_new_calls_per_minute": 0,
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def personas_copy(tmp: Path, extra: str) -> Path:
    target = tmp / f"personas-{secrets.token_hex(4)}"
    shutil.copytree(ROOT / "personas", target)
    path = target / "shakshuka.yaml"
    path.write_text(path.read_text() + extra)
    return target


async def webhook_latencies(personas: Path, data: Path, calls: int) -> list[float]:
    options = SimulatorOptions(reply="echo", conditioning_delay=0.01)
    async with (
        local_bridge(
            personas_dir=personas,
            data_dir=data,
            simulators=options,
            webhook_secret=SECRET,
            answer_within_seconds=0,
            **NO_GUARD,
        ) as bridge,
        httpx.AsyncClient(timeout=10) as http,
    ):

        async def post(path: str, form: dict[str, str]) -> httpx.Response:
            signature = sign(DEMO_AUTH_TOKEN, bridge.public_url + path, form)
            return await http.post(
                bridge.url + path, data=form, headers={SIGNATURE_HEADER: signature}
            )

        times = []
        for i in range(calls + 10):
            call_sid = "CA" + secrets.token_hex(16)
            form = {"CallSid": call_sid, "From": "+14165550123", "To": SHAKSHUKA}
            started = time.perf_counter()
            answer = await post("/twilio/voice", form)
            elapsed = time.perf_counter() - started
            assert "<Connect" in answer.text, answer.text
            await post("/twilio/call-status", {"CallSid": call_sid, "CallStatus": "completed"})
            if i >= 10:  # warm-up
                times.append(elapsed)
        return times


async def bench_context(calls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        plain = await webhook_latencies(personas_copy(tmp, ""), tmp / "a", calls)
        async with WebhookReceiver(reply={"customer": {"name": "Omar Torres"}}) as receiver:
            extra = f"context:\n  url: {receiver.url}/lookup\n"
            looked_up = await webhook_latencies(personas_copy(tmp, extra), tmp / "b", calls)
    print(f"voice webhook latency, {calls} calls each (ms):")
    print("                      p50     p99")
    for label, values in (("no context", plain), ("context lookup", looked_up)):
        p50, p99 = percentile(values, 50) * 1000, percentile(values, 99) * 1000
        print(f"  {label:<16} {p50:7.2f} {p99:7.2f}")
    added50 = (statistics.median(looked_up) - statistics.median(plain)) * 1000
    print(f"  lookup adds (p50 difference): {added50:.2f} ms")


async def ready_calls(
    personas: Path, data: Path, calls: int, conditioning: float, within: float
) -> tuple[list[float], list[float], list[float]]:
    options = SimulatorOptions(reply="echo", conditioning_delay=conditioning)
    silence, ringing_socket, socket = [], [], []
    async with local_bridge(
        personas_dir=personas,
        data_dir=data,
        simulators=options,
        answer_within_seconds=within,
        **NO_GUARD,
    ) as bridge:
        for _ in range(calls):
            report = await dial(
                bridge.url,
                to=SHAKSHUKA,
                auth_token=DEMO_AUTH_TOKEN,
                public_url=bridge.public_url,
                audio=bytes([0xFF]) * 8000,
                tail=0.2,
                # The same conversation either way: 1.5 s once the model listens
                # (answered at once, the caller first sits through the conditioning).
                hangup_after=1.5 + (conditioning if within == 0 else 0.0),
            )
            index = await CallIndex.create(bridge.settings.effective_database_url)
            try:
                while True:
                    record = await index.get(report.call_sid)
                    if record is not None and record.ended_at is not None:
                        break
                    await asyncio.sleep(0.05)
            finally:
                await index.close()
            assert record.model_ready_at is not None, record
            assert record.duration_seconds is not None
            assert record.model_socket_seconds is not None
            silence.append((record.model_ready_at - record.started_at).total_seconds())
            ringing_socket.append(max(0.0, record.model_socket_seconds - record.duration_seconds))
            socket.append(record.model_socket_seconds)
    return silence, ringing_socket, socket


async def bench_ready(calls: int, conditioning: float) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        personas = personas_copy(tmp, "")
        results = {}
        for label, within in (("answer at once", 0.0), ("answer when ready", 5.0)):
            results[label] = await ready_calls(
                personas, tmp / label.replace(" ", "-"), calls, conditioning, within
            )
    print(f"{calls} calls each, simulator conditioning {conditioning:.1f} s (seconds):")
    print(
        "                     silence after answer   model socket while ringing   socket per call"
    )
    print("                        p50      p95              p50      p95               p50")
    for label, (silence, ringing, socket) in results.items():
        print(
            f"  {label:<18} {percentile(silence, 50):7.3f}  {percentile(silence, 95):7.3f}"
            f"          {percentile(ringing, 50):7.3f}  {percentile(ringing, 95):7.3f}"
            f"           {percentile(socket, 50):7.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    context = commands.add_parser("context")
    context.add_argument("--calls", type=int, default=200)
    ready = commands.add_parser("ready")
    ready.add_argument("--calls", type=int, default=10)
    ready.add_argument("--conditioning", type=float, default=2.0)
    args = parser.parse_args()
    logging.getLogger("phonebridge").setLevel(logging.ERROR)  # abandoned calls are the point
    if args.command == "context":
        asyncio.run(bench_context(args.calls))
    else:
        asyncio.run(bench_ready(args.calls, args.conditioning))


if __name__ == "__main__":
    main()
