"""How the soak reads out: one progress line per sample, and the BENCHMARKS.md section."""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

from report import machine
from soak_calls import SCENARIOS
from soak_probe import Sample

if TYPE_CHECKING:
    from soak import SoakResult

# What each result of soak_calls means for the caller, in a few words.
_CATEGORIES = {
    "caller": "completed",
    "closed1000": "completed",
    "caller_dropped": "dropped",
    "bridge": "bridge ended (fallback)",
    "protocol_error": "protocol error",
    "said_and_hung_up": "busy",
    "http403": "rejected",
    "upgrade403": "rejected",
    "closed1008": "rejected",
    "no_stream": "no stream",
}
_SHORT = {
    "completed": "ok",
    "dropped": "drop",
    "bridge ended (fallback)": "fallback",
    "busy": "busy",
    "rejected": "rej",
    "no stream": "nostream",
}


LEGEND = (  # one paragraph
    "Results: `caller` the caller hung up with `stop`; `caller_dropped` its socket dropped "
    "without one; `bridge` the bridge ended the stream (model died or never hand-shook, "
    "no overflow left) and the `<Connect action>` answered with the persona's fallback; "
    "`said_and_hung_up` a `<Say>` answer without a stream (busy: no server, overflow or "
    "toll-fraud allowance left); `http403` forged webhook refused; `upgrade403` forged "
    "stream signature refused at the upgrade; `closed1008` a stream with a wrong token "
    "closed before any model session; `no_stream` webhook answered, stream never opened "
    "(its model session closed at the pending deadline); `closed1000`/`closed1006` the "
    "bridge closed a hand-driven stream after the model died (1000), or after the caller's "
    "`stop` ended it without a close frame (1006: harmless with Twilio, which closes the "
    "socket itself after `stop`)."
)


def category(outcome: str) -> str:
    """``scenario:result`` -> what happened to the caller (``other`` if unexpected)."""
    return _CATEGORIES.get(outcome.partition(":")[2], "other")


def progress_line(sample: Sample, outcomes: Counter[str]) -> str:
    by_category: Counter[str] = Counter()
    for outcome, count in outcomes.items():
        by_category[category(outcome)] += count
    calls = " ".join(f"{_SHORT.get(c, c)}={n}" for c, n in sorted(by_category.items()))
    return (
        f"t={sample.at:6.0f}s calls={sum(outcomes.values())} [{calls}] "
        f"rss={sample.rss_mb:.1f}MB fds={sample.fds} sockets={sample.sockets} "
        f"active={sample.active_calls} leases={sample.leases_in_use} tasks={sample.tasks}"
    )


def _timeline(result: SoakResult, rows: int = 10) -> list[str]:
    """Memory and descriptors at about ``rows`` evenly spaced samples."""
    samples = result.samples
    if not samples:
        return []
    step = max(1, len(samples) // rows)
    chosen = samples[::step]
    if chosen[-1] is not samples[-1]:
        chosen.append(samples[-1])
    lines = [
        "| minute | RSS MB | fds | sockets | active calls | leases | tasks |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in chosen:
        minute = (s.at - result.baseline.at) / 60
        lines.append(
            f"| {minute:.1f} | {s.rss_mb:.1f} | {s.fds} | {s.sockets} | "
            f"{s.active_calls} | {s.leases_in_use} | {s.tasks} |"
        )
    return lines


def render_section(result: SoakResult, command: str) -> str:
    config, base, end = result.config, result.baseline, result.end
    total = sum(result.outcomes.values())
    half = result.samples[len(result.samples) // 2] if result.samples else end
    peak = max((s.rss_mb for s in result.samples), default=end.rss_mb)
    judged = result.judged_seconds >= config.limits.min_judged_seconds
    verdict = "no leak" if not result.leaks else "LEAK: " + "; ".join(result.leaks)
    total_bridge = sum(result.bridge_calls.values())
    cpu_per_call = (
        f"{result.serve_cpu_seconds / total_bridge * 1000:.0f} ms per call"
        if total_bridge
        else "no calls"
    )
    mix = ", ".join(f"{name} {weight:.0%}" for name, weight in SCENARIOS.items())
    lines = [
        "## Soak",
        "",
        f"Reproduce: `{command}` — {machine()}; run {time.strftime('%Y-%m-%d')}.",
        "",
        f"{result.churn_seconds / 60:.1f} minutes of churn against one `phonebridge serve` "
        f"process: {config.concurrency} concurrent callers, calls of "
        f"{config.min_call_seconds:g}-{config.max_call_seconds:g} s back to back "
        f"({total} calls). Scenario mix: {mix}. Model side: {config.healthy_servers} healthy "
        "self-hosted simulators, one that never hand-shakes (bridge handshake timeout "
        f"{config.handshake_timeout:g} s), one that dies {config.die_after:g} s into each "
        "session, PolarGrid and fal simulators (overflow); more callers than servers, so "
        "some calls hear the busy message.",
        "",
        f"**Verdict: {verdict}.**",
        "",
        "| figure | start (idle, after priming) | end (idle, settled) |",
        "|---|---:|---:|",
        f"| RSS MB | {base.rss_mb:.1f} | {end.rss_mb:.1f} |",
        f"| open descriptors | {base.fds} | {end.fds} |",
        f"| of which sockets | {base.sockets} | {end.sockets} |",
        f"| asyncio tasks | {base.tasks} | {end.tasks} |",
        f"| leases in use | {base.leases_in_use} | {end.leases_in_use} |",
        f"| active calls | {base.active_calls} | {end.active_calls} |",
        f"| model sockets open at the simulators | - | {result.open_model_sockets} |",
        "",
        f"Memory: {half.rss_mb:.1f} MB at half time (after warm-up), peak {peak:.1f} MB; "
        f"least-squares slope over the second half {result.slope_mb_per_hour:+.1f} MB/hour "
        + (
            f"(limit {config.limits.max_slope_mb_per_hour:g} MB/hour)."
            if judged
            else f"(not judged: under {config.limits.min_judged_seconds / 60:g} minutes)."
        )
        + f" Lines with ERROR or Traceback in the bridge's log: {result.serve_log_errors}.",
        "",
        *_timeline(result),
        "",
        "| call outcome (scenario: result) | calls |",
        "|---|---:|",
        *(f"| {outcome} | {count} |" for outcome, count in sorted(result.outcomes.items())),
        "",
        LEGEND,
        "",
        "The bridge's own count (`phonebridge_calls_total`, by outcome/end reason) over the "
        f"churn: {total_bridge} calls; the bridge process used {result.serve_cpu_seconds:.0f} s "
        f"of CPU ({cpu_per_call}).",
        "",
        "| outcome/end reason | calls |",
        "|---|---:|",
        *(f"| {reason} | {count} |" for reason, count in sorted(result.bridge_calls.items())),
    ]
    return "\n".join(lines)
