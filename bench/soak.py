"""Soak: minutes of churning simulated calls against one ``phonebridge serve`` (issue 8).

Run: .venv/bin/python bench/soak.py [--minutes 30] [--concurrency 8] [--no-write]

One real bridge process (``phonebridge serve``, its hosted providers pointed
at simulators with ``POLARGRID_BASE_URL`` and ``FAL_BASE_URL``) and, in this process, PersonaPlex
simulators (healthy self-hosted servers, one that never hand-shakes, one that
dies mid-call, PolarGrid, fal) and ``concurrency`` callers placing calls of
random length back to back (``soak_calls``: some drop, forge, or never
stream). Every ``--sample-seconds`` a line shows the bridge's memory,
descriptors, sockets, active calls, leases and tasks. At the end, after the
last call and a settle, it checks everything is back to the idle baseline
(taken after a few priming calls, so lazily opened resources are not counted
as leaks) and that memory is flat over the second half; it exits 1 on a leak
and writes the ``soak`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from report import ROOT, write_section
from serve_env import free_port, serve_env
from soak_calls import CallPlan, Line, place_call, plan_call
from soak_probe import (
    Limits,
    Sample,
    calls_by_reason,
    find_leaks,
    scrape,
    slope_per_hour,
    take_sample,
)
from soak_render import progress_line, render_section

from phonebridge.audio.g711 import pcm16_to_ulaw
from phonebridge.local import DEMO_AUTH_TOKEN, DEMO_FAL_KEY, DEMO_POLARGRID_KEY, PUBLIC_URL
from phonebridge.personas.loader import load_personas
from phonebridge.simulators.personaplex import PersonaPlexSimulator

Print = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class SoakConfig:
    minutes: float = 30.0
    concurrency: int = 8
    min_call_seconds: float = 2.0
    max_call_seconds: float = 20.0
    sample_seconds: float = 10.0
    healthy_servers: int = 3  # plus one that never hand-shakes and one that dies
    die_after: float = 4.0  # the dying server crashes this long after its handshake
    handshake_timeout: float = 3.0  # PERSONAPLEX_HANDSHAKE_TIMEOUT for the bridge
    pending_timeout: float = 5.0  # PHONEBRIDGE_PENDING_TIMEOUT: streams that never come
    settle_seconds: float = 30.0  # at most, after the last call, for everything to close
    priming_call_seconds: float = 1.0
    seed: int = 8
    limits: Limits = field(default_factory=Limits)
    keep: bool = False  # keep the work directory (serve log, database, recordings)


@dataclass(slots=True)
class SoakResult:
    config: SoakConfig
    baseline: Sample
    samples: list[Sample]  # during the churn
    end: Sample  # settled, after the last call
    outcomes: Counter[str]
    open_model_sockets: int
    slope_mb_per_hour: float
    judged_seconds: float  # span of the second half the slope was fitted on
    churn_seconds: float
    serve_log_errors: int
    bridge_calls: dict[str, int]  # phonebridge_calls_total during the churn, by outcome/reason
    serve_cpu_seconds: float  # the bridge process's CPU time during the churn
    leaks: list[str]


async def run_soak(config: SoakConfig, out: Print = print) -> SoakResult:
    """Run one soak and judge it; see the module docstring."""
    work = Path(tempfile.mkdtemp(prefix="phonebridge-soak-"))
    try:
        return await _soak(config, work, out)
    finally:
        if config.keep:
            out(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


async def _soak(config: SoakConfig, work: Path, out: Print) -> SoakResult:
    async with contextlib.AsyncExitStack() as stack:
        sims = await _start_simulators(stack, config)
        polargrid, fal, self_hosted = sims[0], sims[1], sims[2:]
        env, port = _serve_env(
            config, work, [sim.url for sim in self_hosted], polargrid.url, fal.url
        )
        log_path = work / "serve.log"
        serve = await _start_serve(stack, env, log_path)
        bridge_url = f"http://127.0.0.1:{port}"
        line = Line(
            bridge_url=bridge_url,
            public_url=PUBLIC_URL,
            auth_token=DEMO_AUTH_TOKEN,
            numbers=_numbers(work / "personas"),
            caller_audio=_caller_audio(config.max_call_seconds + 1),
        )
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
        t0 = time.monotonic()

        async def sample() -> Sample:
            return await take_sample(http, bridge_url, serve.pid, time.monotonic() - t0)

        # Priming: one short call per number, so that what the bridge opens
        # lazily once (database connections, codec state) is in the baseline.
        await asyncio.gather(
            *(
                place_call(
                    line,
                    CallPlan("normal", number, config.priming_call_seconds, f"+1555000{index:04d}"),
                )
                for index, number in enumerate(line.numbers)
            )
        )
        baseline = await _settle(sample, sims, None, config)
        metrics_before = await scrape(http, bridge_url)
        out(f"baseline {progress_line(baseline, Counter())}")

        outcomes: Counter[str] = Counter()
        samples: list[Sample] = []
        churn_start = time.monotonic()
        deadline = churn_start + config.minutes * 60
        rng = random.Random(config.seed)

        async def caller() -> None:
            while time.monotonic() < deadline:
                plan = plan_call(rng, line, config.min_call_seconds, config.max_call_seconds)
                began = time.monotonic()
                outcomes[await place_call(line, plan)] += 1
                # Hold the slot for the planned length even if answered at once.
                await asyncio.sleep(max(0.0, began + plan.seconds - time.monotonic()))

        async def sampler() -> None:
            while True:
                await asyncio.sleep(config.sample_seconds)
                current = await sample()
                samples.append(current)
                out(progress_line(current, outcomes))

        sampling = asyncio.create_task(sampler())
        try:
            await asyncio.gather(*(caller() for _ in range(config.concurrency)))
        finally:
            sampling.cancel()
            await asyncio.gather(sampling, return_exceptions=True)
        churn_seconds = time.monotonic() - churn_start
        end = await _settle(sample, sims, baseline, config)
        out(f"settled {progress_line(end, outcomes)}")
        metrics_after = await scrape(http, bridge_url)
        open_models = _open_model_sockets(sims)

    # The serve process is stopped (drained) by now: its log is complete.
    second_half = [s for s in samples if s.at >= baseline.at + churn_seconds / 2]
    slope = slope_per_hour([(s.at, s.rss_mb) for s in second_half])
    judged = second_half[-1].at - second_half[0].at if len(second_half) > 1 else 0.0
    leaks = find_leaks(
        baseline,
        end,
        open_model_sockets=open_models,
        slope_mb_per_hour=slope,
        judged_seconds=judged,
        limits=config.limits,
    )
    return SoakResult(
        config=config,
        baseline=baseline,
        samples=samples,
        end=end,
        outcomes=outcomes,
        open_model_sockets=open_models,
        slope_mb_per_hour=slope,
        judged_seconds=judged,
        churn_seconds=churn_seconds,
        serve_log_errors=_count_errors(log_path),
        bridge_calls=_difference(calls_by_reason(metrics_after), calls_by_reason(metrics_before)),
        serve_cpu_seconds=metrics_after.get("process_cpu_seconds_total", 0.0)
        - metrics_before.get("process_cpu_seconds_total", 0.0),
        leaks=leaks,
    )


async def _start_simulators(
    stack: contextlib.AsyncExitStack, config: SoakConfig
) -> list[PersonaPlexSimulator]:
    """PolarGrid, fal, then the self-hosted pool in lease order.

    The pool leases the first free server in ``PERSONAPLEX_URLS`` order: the
    hung server comes first (after each hang it rests, then catches the next
    call again), the dying one last (it takes calls when the healthy ones are
    busy, which under this load is often).
    """
    common = {"reply": "echo", "conditioning_delay": 0.3}
    specs: list[dict[str, object]] = [
        {"flavour": "polargrid", "api_key": DEMO_POLARGRID_KEY},
        {"flavour": "fal", "api_key": DEMO_FAL_KEY},
        {"flavour": "self-hosted", "never_handshake": True},
    ]
    specs += [{"flavour": "self-hosted"} for _ in range(config.healthy_servers)]
    specs.append({"flavour": "self-hosted", "die_after": config.die_after})
    return [
        await stack.enter_async_context(PersonaPlexSimulator(**common, **spec))  # type: ignore[arg-type]
        for spec in specs
    ]


def _serve_env(
    config: SoakConfig, work: Path, self_hosted: list[str], polargrid_url: str, fal_url: str
) -> tuple[dict[str, str], int]:
    personas = work / "personas"
    shutil.copytree(ROOT / "personas", personas)
    port = free_port()
    env = serve_env(
        personas=personas,
        data=work / "data",
        port=port,
        self_hosted=self_hosted,
        PERSONAPLEX_HANDSHAKE_TIMEOUT=str(config.handshake_timeout),
        POLARGRID_API_KEY=DEMO_POLARGRID_KEY,
        POLARGRID_BASE_URL=polargrid_url,
        FAL_KEY=DEMO_FAL_KEY,
        FAL_BASE_URL=fal_url,
        PHONEBRIDGE_PENDING_TIMEOUT=str(config.pending_timeout),
    )
    return env, port


async def _start_serve(
    stack: contextlib.AsyncExitStack,
    env: dict[str, str],
    log_path: Path,
) -> asyncio.subprocess.Process:
    log = stack.enter_context(log_path.open("wb"))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "phonebridge.cli",
        "serve",
        env=env,
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    stack.push_async_callback(_stop_serve, process)
    url = f"http://127.0.0.1:{env['PHONEBRIDGE_PORT']}/healthz"
    async with httpx.AsyncClient() as http, asyncio.timeout(60):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"phonebridge serve exited ({process.returncode}): {log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return process
            await asyncio.sleep(0.1)


async def _stop_serve(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (the bridge drains; nothing is live by now), SIGKILL if it hangs."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


async def _settle(
    sample: Callable[[], Awaitable[Sample]],
    sims: list[PersonaPlexSimulator],
    baseline: Sample | None,
    config: SoakConfig,
) -> Sample:
    """The first quiet sample once calls are gone: nothing live, nothing leased.

    Waits at least a pending timeout (a stream that never came is only
    abandoned at its deadline), then until back at ``baseline`` or the
    settle time runs out, whichever first; the caller judges what is left.
    """
    await asyncio.sleep(config.pending_timeout + 0.5)
    give_up = time.monotonic() + config.settle_seconds
    while True:
        current = await sample()
        quiet = (
            current.active_calls == 0
            and current.leases_in_use == 0
            and _open_model_sockets(sims) == 0
        )
        back = baseline is None or (
            current.tasks <= baseline.tasks
            and current.fds <= baseline.fds + config.limits.fd_slack
            and current.sockets <= baseline.sockets + config.limits.fd_slack
        )
        if (quiet and back) or time.monotonic() > give_up:
            return current
        await asyncio.sleep(0.5)


def _open_model_sockets(sims: list[PersonaPlexSimulator]) -> int:
    return sum(1 for sim in sims for record in sim.connections if record.closed_at is None)


def _numbers(personas: Path) -> tuple[str, ...]:
    book = load_personas(personas)
    return tuple(number for persona in book.personas for number in persona.numbers)


def _caller_audio(seconds: float) -> bytes:
    """A caller who keeps talking: a slow glide between two tones, 8 kHz mu-law."""
    t = np.arange(int(seconds * 8000)) / 8000
    freq = 300 + 150 * np.sin(2 * np.pi * 0.2 * t)
    pcm = (np.sin(2 * np.pi * np.cumsum(freq) / 8000) * 0.3 * 32767).astype("<i2")
    return pcm16_to_ulaw(pcm.tobytes())


def _difference(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """Counts of the churn alone (the priming calls taken out)."""
    counts = {key: value - before.get(key, 0) for key, value in after.items()}
    return {key: value for key, value in counts.items() if value}


def _count_errors(log_path: Path) -> int:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return -1
    return sum(1 for line in lines if "Traceback" in line or " ERROR " in line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument(
        "--max-slope", type=float, default=Limits().max_slope_mb_per_hour, help="MB/hour"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args()
    config = SoakConfig(
        minutes=args.minutes,
        concurrency=args.concurrency,
        sample_seconds=args.sample_seconds,
        seed=args.seed,
        limits=Limits(max_slope_mb_per_hour=args.max_slope),
        keep=args.keep,
    )
    result = asyncio.run(run_soak(config, lambda text: print(text, flush=True)))
    shown = [arg for arg in sys.argv[1:] if arg not in ("--keep", "--no-write")]
    section = render_section(result, " ".join([".venv/bin/python bench/soak.py", *shown]))
    print(section)
    if not args.no_write:
        write_section("soak", section)
        print(f"\nwrote the soak section of {ROOT / 'BENCHMARKS.md'}")
    if result.leaks:
        print("LEAKS: " + "; ".join(result.leaks), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
