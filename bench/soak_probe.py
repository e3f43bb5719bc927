"""What the soak measures in the bridge process, and how it judges a leak.

Two views of one process: the kernel's (``/proc/<pid>/status`` VmRSS, the
``/proc/<pid>/fd`` links, those that are sockets) and the bridge's own
``/metrics`` (active calls, leases in use, asyncio tasks). Judging is pure
(:func:`find_leaks`, :func:`slope_per_hour`) so it is tested without a soak.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from proc import descriptors, rss_bytes
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # seconds since the soak started
    rss_mb: float
    fds: int
    sockets: int
    active_calls: int
    leases_in_use: int
    tasks: int


def proc_view(pid: int) -> tuple[float, int, int]:
    """(RSS in MB, open descriptors, of which sockets) of process ``pid``."""
    fds, sockets = descriptors(pid)
    return rss_bytes(pid) / 2**20, fds, sockets


def parse_metrics(text: str) -> dict[str, float]:
    """Samples by ``name`` or ``name{label=value,...}`` (labels sorted)."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


async def scrape(http: httpx.AsyncClient, bridge_url: str) -> dict[str, float]:
    response = await http.get(bridge_url + "/metrics")
    response.raise_for_status()
    return parse_metrics(response.text)


def calls_by_reason(metrics: dict[str, float]) -> dict[str, int]:
    """``phonebridge_calls_total`` as ``{"outcome/end_reason": count}``."""
    counts = {}
    prefix = "phonebridge_calls_total{"
    for key, value in metrics.items():
        if key.startswith(prefix):
            labels = dict(part.split("=", 1) for part in key[len(prefix) : -1].split(","))
            counts[f"{labels.get('outcome')}/{labels.get('end_reason')}"] = int(value)
    return counts


async def take_sample(http: httpx.AsyncClient, bridge_url: str, pid: int, at: float) -> Sample:
    metrics = await scrape(http, bridge_url)
    rss_mb, fds, sockets = proc_view(pid)
    return Sample(
        at=at,
        rss_mb=rss_mb,
        fds=fds,
        sockets=sockets,
        active_calls=int(metrics.get("phonebridge_active_calls", -1)),
        leases_in_use=int(metrics.get("phonebridge_leases{state=in_use}", -1)),
        tasks=int(metrics.get("phonebridge_asyncio_tasks", -1)),
    )


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, value)`` points, per hour (0 with < 2 points)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return 0.0
    covariance = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return covariance / spread * 3600


@dataclass(frozen=True, slots=True)
class Limits:
    """What counts as a leak. Descriptors get a little slack: a database pool
    may open a connection lazily; a leak of one per call would blow far past it
    within minutes. Memory is judged only over a long enough second half."""

    fd_slack: int = 2
    max_slope_mb_per_hour: float = 10.0
    min_judged_seconds: float = 300.0


def find_leaks(
    baseline: Sample,
    end: Sample,
    *,
    open_model_sockets: int,
    slope_mb_per_hour: float,
    judged_seconds: float,
    limits: Limits = Limits(),
) -> list[str]:
    """Every way ``end`` is not back to ``baseline``; empty when nothing leaked."""
    leaks = []
    if end.active_calls != 0:
        leaks.append(f"active calls {end.active_calls} (want 0)")
    if end.leases_in_use != 0:
        leaks.append(f"leases in use {end.leases_in_use} (want 0)")
    if end.tasks > baseline.tasks:
        leaks.append(f"asyncio tasks {baseline.tasks} -> {end.tasks}")
    if end.fds > baseline.fds + limits.fd_slack:
        leaks.append(f"descriptors {baseline.fds} -> {end.fds} (slack {limits.fd_slack})")
    if end.sockets > baseline.sockets + limits.fd_slack:
        leaks.append(f"sockets {baseline.sockets} -> {end.sockets} (slack {limits.fd_slack})")
    if open_model_sockets != 0:
        leaks.append(f"model connections still open at the simulators: {open_model_sockets}")
    if (
        judged_seconds >= limits.min_judged_seconds
        and slope_mb_per_hour > limits.max_slope_mb_per_hour
    ):
        leaks.append(
            f"memory grows {slope_mb_per_hour:.1f} MB/h over the second half "
            f"(limit {limits.max_slope_mb_per_hour:g})"
        )
    return leaks
