"""Load benchmark: how many concurrent calls one core of `phonebridge serve` carries.

For each N in ``--levels``: a fresh ``phonebridge serve`` pinned with
``taskset`` to ``--serve-cpus``; this process (pinned to ``--generator-cpus``)
runs N callers (bench/load_caller.py) and N self-hosted model servers
(bench/load_model.py), both test doubles with pre-encoded audio. After one
warm-up call, the N calls start one by one, settle, and are measured for
``--seconds``; then they hang up, spread over a second.

Reported per N (bridge figures from its own /metrics, differenced over the
window; wall-clock figures from this process, whose clock the model farm
shares):

- per-frame processing in the bridge, p50/p99/max per direction (histogram
  buckets interpolated; "max" is the upper bound of the highest bucket hit);
- event-loop lag p50/p99 (how late a 20 ms timer fires: what every frame waits on
  top of its processing) and late frames (probe slots more than 20 ms late);
- dropped caller frames (after the model was ready);
- CPU per call-second and resident memory per call;
- hang-up: caller's ``stop`` sent -> the model server sees the socket close;
- bridge-added first audio: (model's first page -> caller's first frame) +
  (stream start or handshake, whichever is later -> model's first input);
- transit: model reply burst sent -> heard by the caller (outbound), caller
  burst sent -> the 80 ms step holding its onset whole at a probe model server
  (inbound: includes the wait for the rest of the step, 0-60 ms, that the real
  server has whatever the client does), p50/p99.

"Calls per core" is the largest N that passed (loop-lag p99 under 20 ms, zero
dropped frames) with every smaller level passing too.
Run: ``.venv/bin/python bench/bench_load.py --write``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from load_caller import VONAGE_API_KEY, VONAGE_SECRET, Caller, VonageCaller
from load_model import LoadModelFarm
from load_stats import Scrape, merge, pair_latencies, parse_metrics, percentile
from proc import children, cpu_seconds, rss_bytes
from report import machine, write_section
from serve_env import free_port, serve_env

from phonebridge.local import DEMO_AUTH_TOKEN, PUBLIC_URL
from phonebridge.simulators.phone.routes import Routes

BENCH_NUMBER = "+14165550190"
PERSONA = f"""# The load benchmark's persona: one self-hosted model per call, no limits in the way.
name: Load test
numbers: ["{BENCH_NUMBER}"]
provider: personaplex
voice: NATF2
prompt: You are a load test. Say hello.
default: true
limits:
  max_call_seconds: 3600
  silence_hangup_seconds: null
"""


@dataclass(frozen=True, slots=True)
class LevelResult:
    calls: int
    workers: int
    inbound_p50_us: float
    inbound_p99_us: float
    inbound_max_us: float
    outbound_p50_us: float
    outbound_p99_us: float
    outbound_max_us: float
    loop_lag_p50_ms: float
    loop_lag_p99_ms: float
    late_frames: int
    dropped_frames: int
    cpu_ms_per_call_second: float
    rss_mb_per_call: float
    idle_rss_mb: float
    hangup_p50_ms: float
    hangup_p99_ms: float
    first_audio_bridge_p50_ms: float
    first_audio_bridge_p99_ms: float
    outbound_transit_p50_ms: float
    outbound_transit_p99_ms: float
    inbound_transit_p50_ms: float
    inbound_transit_p99_ms: float
    generator_cpu: float  # share of one core the generator used
    generator_late_ms: float  # p99 of how far callers fell behind their own 20 ms grid
    failed_calls: int

    @property
    def passes(self) -> bool:
        return self.loop_lag_p99_ms < 20 and self.dropped_frames == 0 and self.failed_calls == 0


def free_ports(count: int) -> int:
    """A base port with ``count`` free ports from it (worker N listens on base + N)."""
    for _ in range(100):
        base = free_port()
        try:
            with contextlib.ExitStack() as stack:
                for offset in range(count):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no {count} consecutive free ports")


class ServeProcess:
    """``phonebridge serve`` pinned to some CPUs, with its own data and personas."""

    def __init__(
        self, workdir: Path, model_urls: list[str], cpus: str, workers: int, carrier: str
    ) -> None:
        personas = workdir / "personas"
        personas.mkdir()
        (personas / "load.yaml").write_text(PERSONA)
        self.port = free_port() if workers == 1 else free_ports(workers)
        self.workers = workers
        self.urls = [f"http://127.0.0.1:{self.port + n}" for n in range(workers)]
        self.url = self.urls[0]
        env = serve_env(
            personas=personas,
            data=workdir / "data",
            port=self.port,
            self_hosted=model_urls,
            PHONEBRIDGE_MAX_CALLS=str(len(model_urls) + 10),
            PHONEBRIDGE_LOG_LEVEL="WARNING",
            # The toll-fraud guard would rightly refuse a hundred calls in three seconds.
            PHONEBRIDGE_MAX_NEW_CALLS_PER_MINUTE="0",
            PHONEBRIDGE_CALLER_MAX_CALLS_PER_HOUR="0",
            **(
                {"VONAGE_SIGNATURE_SECRET": VONAGE_SECRET, "VONAGE_API_KEY": VONAGE_API_KEY}
                if carrier == "vonage"
                else {}
            ),
        )
        command = [sys.executable, "-m", "phonebridge.cli", "serve"]
        if workers > 1:
            command += ["--workers", str(workers)]
        taskset = shutil.which("taskset")
        if taskset is not None:
            command = [taskset, "-c", cpus, *command]
        self.process = subprocess.Popen(command, env=env)

    @property
    def pids(self) -> list[int]:
        """The processes doing the work: serve itself, or its workers."""
        return [self.process.pid] if self.workers == 1 else children(self.process.pid)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def rss_bytes(self) -> int:
        return sum(rss_bytes(pid) for pid in self.pids)

    def webhook_base(self, index: int) -> str:
        """Round robin over the workers, as the proxy in front would."""
        return self.urls[index % self.workers]

    def stream_route(self, stream_url: str) -> str:
        """``/twilio/r/wN/...`` to worker N, as deploy/Caddyfile.workers routes it."""
        path = urlsplit(stream_url).path
        match = re.match(r"/twilio/r/w(\d+)/", path)
        base = self.urls[int(match.group(1))] if match else self.url
        return base.replace("http://", "ws://") + path

    async def ready(self, http: httpx.AsyncClient) -> None:
        async with asyncio.timeout(60):
            for url in self.urls:
                while True:
                    if self.process.poll() is not None:
                        raise RuntimeError(f"serve exited with {self.process.returncode}")
                    try:
                        if (await http.get(url + "/readyz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.05)

    async def scrape(self, http: httpx.AsyncClient) -> Scrape:
        texts = [(await http.get(url + "/metrics")).text for url in self.urls]
        return merge([parse_metrics(text) for text in texts])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_profiler(
    pid: int, args: argparse.Namespace, calls: int
) -> subprocess.Popen[bytes] | None:
    """py-spy over the measurement window, as collapsed stacks (``--profile DIR``)."""
    if args.profile is None:
        return None
    py_spy = Path(sys.executable).parent / "py-spy"
    out = Path(args.profile) / f"serve-{calls}-calls.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [str(py_spy), "record", "-p", str(pid), "-d", str(int(args.seconds)), "-r", "200"]
    command += ["-f", "raw", "-o", str(out), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def run_level(calls: int, args: argparse.Namespace) -> LevelResult:
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="pb-load-") as tmp:
        async with LoadModelFarm(calls + 1) as farm:
            serve = ServeProcess(Path(tmp), farm.urls, args.serve_cpus, args.workers, args.carrier)
            try:
                async with httpx.AsyncClient(timeout=30) as http:
                    await serve.ready(http)

                    def caller(index: int) -> Caller:
                        phase = (index % 20) * 0.001  # spread the callers' 20 ms grids
                        kind = VonageCaller if args.carrier == "vonage" else Caller
                        return kind(
                            index,
                            routes=Routes(PUBLIC_URL, serve.webhook_base(index)),
                            stream_route=serve.stream_route,
                            auth_token=DEMO_AUTH_TOKEN,
                            to=BENCH_NUMBER,
                            phase=phase,
                        )

                    warm = caller(0)
                    await warm.dial(http)
                    await farm.wait_for_connections(1)
                    warm_task = asyncio.create_task(warm.talk())
                    await asyncio.sleep(2.0)
                    warm.hang_up()
                    await warm_task
                    await farm.wait_all_closed()
                    idle_rss = serve.rss_bytes()
                    start_scrape = await serve.scrape(http)

                    callers = [caller(i) for i in range(1, calls + 1)]
                    tasks = []
                    for index, each in enumerate(callers, start=1):
                        await each.dial(http)
                        # Call i <-> model connection i: one webhook opens one session.
                        await farm.wait_for_connections(index + 1)
                        tasks.append(asyncio.create_task(each.talk()))
                    await asyncio.sleep(args.settle)

                    before = await serve.scrape(http)
                    cpu_before, wall_before = serve.cpu_seconds(), time.monotonic()
                    gen_before = time.process_time()
                    window_start = loop.time()
                    profiler = start_profiler(serve.pids[0], args, calls)
                    await asyncio.sleep(args.seconds)
                    if profiler is not None:
                        await asyncio.to_thread(profiler.wait)
                    window_end = loop.time()
                    after = await serve.scrape(http)
                    cpu_after, wall_after = serve.cpu_seconds(), time.monotonic()
                    gen_cpu = (time.process_time() - gen_before) / (wall_after - wall_before)
                    rss_loaded = serve.rss_bytes()

                    for index, each in enumerate(callers):
                        loop.call_later(index / calls, each.hang_up)
                    await asyncio.gather(*tasks)
                    await farm.wait_all_closed()
                    await asyncio.sleep(0.5)
                    final = await serve.scrape(http)
            finally:
                serve.stop()

    wall = wall_after - wall_before
    inbound = after.histogram("phonebridge_frame_processing_seconds", direction="inbound")
    inbound = inbound.minus(
        before.histogram("phonebridge_frame_processing_seconds", direction="inbound")
    )
    outbound = after.histogram("phonebridge_frame_processing_seconds", direction="outbound")
    outbound = outbound.minus(
        before.histogram("phonebridge_frame_processing_seconds", direction="outbound")
    )
    lag = after.histogram("phonebridge_event_loop_lag_seconds").minus(
        before.histogram("phonebridge_event_loop_lag_seconds")
    )
    dropped = final.value("phonebridge_dropped_frames_total") - start_scrape.value(
        "phonebridge_dropped_frames_total"
    )

    hangups, first_audio, out_transit, in_transit, gen_late = [], [], [], [], []
    failed = 0
    for each in callers:
        trace = each.trace
        conn = farm.connections[trace.index]
        gen_late.append(trace.send_late_max)
        if trace.error or trace.stop_at is None or conn.closed_at is None:
            failed += 1
            continue
        hangups.append(conn.closed_at - trace.stop_at)
        if (
            trace.first_media_at is not None
            and conn.first_page_at is not None
            and conn.first_input_at is not None
            and trace.start_at is not None
            and conn.handshake_at is not None
        ):
            outbound_first = trace.first_media_at - conn.first_page_at
            inbound_first = conn.first_input_at - max(trace.start_at, conn.handshake_at)
            first_audio.append(outbound_first + inbound_first)

        def in_window(times: list[float]) -> list[float]:
            return [t for t in times if window_start <= t <= window_end]

        out_transit += pair_latencies(in_window(conn.bursts_sent), trace.bursts_heard, 0.5)
        if conn.probe:
            in_transit += pair_latencies(in_window(trace.bursts_sent), conn.bursts_heard, 0.5)

    def us(value: float) -> float:
        return value * 1e6

    def ms(value: float) -> float:
        return value * 1e3

    return LevelResult(
        calls=calls,
        workers=args.workers,
        inbound_p50_us=us(inbound.quantile(0.5)),
        inbound_p99_us=us(inbound.quantile(0.99)),
        inbound_max_us=us(inbound.max_bound()),
        outbound_p50_us=us(outbound.quantile(0.5)),
        outbound_p99_us=us(outbound.quantile(0.99)),
        outbound_max_us=us(outbound.max_bound()),
        loop_lag_p50_ms=ms(lag.quantile(0.5)),
        loop_lag_p99_ms=ms(lag.quantile(0.99)),
        late_frames=int(lag.count_above(0.020)),
        dropped_frames=int(dropped),
        cpu_ms_per_call_second=ms((cpu_after - cpu_before) / (calls * wall)),
        rss_mb_per_call=(rss_loaded - idle_rss) / calls / 2**20,
        idle_rss_mb=idle_rss / 2**20,
        hangup_p50_ms=ms(percentile(hangups, 50)),
        hangup_p99_ms=ms(percentile(hangups, 99)),
        first_audio_bridge_p50_ms=ms(percentile(first_audio, 50)),
        first_audio_bridge_p99_ms=ms(percentile(first_audio, 99)),
        outbound_transit_p50_ms=ms(percentile(out_transit, 50)),
        outbound_transit_p99_ms=ms(percentile(out_transit, 99)),
        inbound_transit_p50_ms=ms(percentile(in_transit, 50)),
        inbound_transit_p99_ms=ms(percentile(in_transit, 99)),
        generator_cpu=gen_cpu,
        generator_late_ms=ms(percentile(gen_late, 99)),
        failed_calls=failed,
    )


def _fmt(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def table(results: list[LevelResult]) -> str:
    head = (
        "| calls | in p50/p99/max µs | out p50/p99/max µs | loop lag p50/p99 ms | late | dropped "
        "| CPU ms per call-s | RSS MB/call | hang-up p50/p99 ms | first audio (bridge) p50/p99 ms "
        "| transit out p50/p99 ms | transit in p50/p99 ms | generator CPU | pass |\n"
        "|---:|---|---|---:|---:|---:|---:|---:|---|---|---|---|---:|:---:|"
    )
    rows = [
        f"| {r.calls} | {_fmt(r.inbound_p50_us)}/{_fmt(r.inbound_p99_us)}/{_fmt(r.inbound_max_us)}"
        f" | {_fmt(r.outbound_p50_us)}/{_fmt(r.outbound_p99_us)}/{_fmt(r.outbound_max_us)}"
        f" | {_fmt(r.loop_lag_p50_ms, 1)}/{_fmt(r.loop_lag_p99_ms, 1)}"
        f" | {r.late_frames} | {r.dropped_frames}"
        f" | {_fmt(r.cpu_ms_per_call_second, 2)} | {_fmt(r.rss_mb_per_call, 2)}"
        f" | {_fmt(r.hangup_p50_ms, 1)}/{_fmt(r.hangup_p99_ms, 1)}"
        f" | {_fmt(r.first_audio_bridge_p50_ms, 1)}/{_fmt(r.first_audio_bridge_p99_ms, 1)}"
        f" | {_fmt(r.outbound_transit_p50_ms, 1)}/{_fmt(r.outbound_transit_p99_ms, 1)}"
        f" | {_fmt(r.inbound_transit_p50_ms, 1)}/{_fmt(r.inbound_transit_p99_ms, 1)}"
        f" | {r.generator_cpu:.0%} | {'yes' if r.passes else 'no'} |"
        for r in results
    ]
    return "\n".join([head, *rows])


def calls_per_core(results: list[LevelResult]) -> int:
    """The largest N below which every measured level passed.

    Not the largest passing N: near capacity a level can pass on a quiet
    window after a smaller one failed on a lag spike, and claiming the larger
    figure would hide that the smaller one did not hold.
    """
    carried = 0
    for result in sorted(results, key=lambda r: r.calls):
        if not result.passes:
            break
        carried = result.calls
    return carried


async def main_async(args: argparse.Namespace) -> list[LevelResult]:
    results = []
    for calls in args.levels:
        result = await run_level(calls, args)
        results.append(result)
        print(table([result]).splitlines()[-1], flush=True)
        if args.stop_on_fail and not result.passes:
            break
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--levels",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[10, 25, 50, 75, 100],
        help="comma-separated numbers of concurrent calls",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    parser.add_argument("--settle", type=float, default=3.0, help="wait after the last call starts")
    parser.add_argument("--workers", type=int, default=1, help="phonebridge serve --workers")
    parser.add_argument("--serve-cpus", default="0", help="taskset CPU list for serve")
    parser.add_argument("--generator-cpus", default="1", help="CPU list for this process")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the serve process into DIR")
    parser.add_argument(
        "--carrier",
        choices=["twilio", "vonage"],
        default="twilio",
        help="the callers' carrier: twilio (8 kHz mu-law) or vonage (16 kHz L16 binary)",
    )
    parser.add_argument("--stop-on-fail", action="store_true", help="stop after the first fail")
    parser.add_argument("--write", metavar="SECTION", nargs="?", const="bench_load", default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cpus = {int(c) for c in args.generator_cpus.split(",")} & set(range(os.cpu_count() or 1))
    if cpus:
        os.sched_setaffinity(0, cpus)
    results = asyncio.run(main_async(args))
    best = calls_per_core(results)
    print(table(results))
    print(f"calls per {args.workers} worker(s) on CPUs {args.serve_cpus}: {best}")
    if args.write:
        command = " ".join(["bench/bench_load.py", *sys.argv[1:]])
        write_section(
            args.write,
            f"## Load ({args.carrier}): {args.workers} worker(s) on CPU {args.serve_cpus}\n\n"
            f"Reproduce: `.venv/bin/python {command}` — {machine()}. Generator and model farm"
            f" on CPU {args.generator_cpus}; window {args.seconds:g} s per level.\n\n"
            f"{table(results)}\n\n**Calls carried with loop-lag p99 < 20 ms and no dropped"
            f" frames, at this level and every one below it: {best}.**",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
