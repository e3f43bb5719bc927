"""``phonebridge serve --workers N``: one bridge process per core, calls kept sticky.

A call is born in the process that answers Twilio's webhook: it opens the
model session at once (so conditioning overlaps the ring) and holds it until
the media stream arrives. Twilio's stream carries nothing a load balancer can
route on, so plain ``uvicorn --workers`` (one shared port) would hand about
half the streams to a process that never heard of the call.

Instead each worker is a full ``phonebridge serve`` on its own port
(``--port + N``): a worker is a replica on one host. Its replica id is
``w<N>``, or ``<R>-w<N>`` on a host whose replica id is R
(``PHONEBRIDGE_REPLICA_ID``), and everything that must come back to it lives
under ``/twilio/r/<id>/`` (the ``<Stream url>`` and the ``<Connect action>``
URL it writes into its TwiML), exactly as for replicas on many hosts. The TLS
proxy in front sends ``/twilio/voice``, the dashboard and the API to any
worker, and ``/twilio/r/w<N>/*`` to worker N (deploy/Caddyfile.workers).
Self-hosted servers are split between the workers, so a lease stays exclusive
without any cross-process state.

The supervisor repairs calls a crash cut (once, before any worker starts),
forwards SIGTERM/SIGINT so every worker drains, and if a worker dies on its
own, drains the rest and exits non-zero so systemd or Kubernetes restarts the
whole set (a lone restarted worker would not know its siblings' calls).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from types import FrameType

from phonebridge.config import Settings, SettingsError
from phonebridge.service import repair_interrupted_calls

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """How to start worker ``index``."""

    index: int
    port: int
    argv: list[str]
    env: dict[str, str]


def plan_workers(
    args: argparse.Namespace, settings: Settings, workers: int, environ: dict[str, str]
) -> list[WorkerPlan]:
    """One ``serve`` command per worker: its port, its servers, its share of the cap."""
    urls = settings.personaplex_urls
    if urls and len(urls) < workers:
        raise SettingsError(
            [
                f"--workers {workers} needs at least {workers} PERSONAPLEX_URLS (each worker"
                f" owns its own self-hosted servers), got {len(urls)}"
            ]
        )
    per_worker_cap = math.ceil(settings.max_calls / workers)
    common = [sys.executable, "-m", "phonebridge.cli", "serve"]
    for flag, value in (
        ("--host", args.host),
        ("--public-url", args.public_url),
        ("--personas", args.personas),
        ("--data", args.data),
    ):
        if value is not None:
            common += [flag, str(value)]
    common += ["--drain-seconds", str(args.drain_seconds), "--max-calls", str(per_worker_cap)]
    common += ["--withdraw-seconds", str(args.withdraw_seconds)]
    plans = []
    for index in range(workers):
        port = settings.port + index
        argv = [*common, "--port", str(port)]
        if urls:
            argv += ["--personaplex-urls", ",".join(urls[index::workers])]
        env = {**environ, "PHONEBRIDGE_WORKER": str(index)}
        plans.append(WorkerPlan(index, port, argv, env))
    return plans


def run_workers(args: argparse.Namespace, settings: Settings, workers: int) -> int:
    """Start the workers and supervise them until they have all exited."""
    plans = plan_workers(args, settings, workers, dict(os.environ))
    asyncio.run(repair_interrupted_calls(settings))
    # Our own interpreter and CLI, with flags we built: no untrusted input.
    processes = [subprocess.Popen(plan.argv, env=plan.env) for plan in plans]  # noqa: S603
    log.info(
        "started %d workers on ports %s; route /twilio/r/%s/* to worker N",
        workers,
        ", ".join(str(plan.port) for plan in plans),
        "w<N>" if settings.replica_id is None else f"{settings.replica_id}-w<N>",
    )
    stopping = False
    failed = False

    def stop_all(sig: int, _frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.poll() is None:
                process.send_signal(sig)

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while any(process.poll() is None for process in processes):
            if not stopping and any(process.poll() is not None for process in processes):
                dead = [
                    plan.index
                    for plan, proc in zip(plans, processes, strict=True)
                    if proc.poll() is not None
                ]
                log.error("worker(s) %s exited on their own; draining the others", dead)
                failed = True
                stop_all(signal.SIGTERM)
            time.sleep(POLL_SECONDS)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [process.returncode for process in processes]
    return 1 if failed or any(codes) else 0
