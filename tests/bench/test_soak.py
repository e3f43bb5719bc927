"""The soak benchmark's machinery, so it cannot rot between the long runs.

A few seconds of churn with tiny numbers against a real ``phonebridge serve``
must come back to its baseline (zero leaks), and the leak judge must flag
each kind of leak it claims to detect.
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from types import ModuleType

import pytest

from phonebridge.metrics import BridgeMetrics

from ..conftest import HEAVY

pytestmark = HEAVY  # a real server under generated load: one at a time (tests/conftest.py)

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> dict[str, ModuleType]:
    """The bench scripts import each other as top-level modules, as when run."""
    monkeypatch.syspath_prepend(str(BENCH))
    return {name: importlib.import_module(name) for name in ("soak", "soak_probe")}


def sample(probe: ModuleType, **changes: float) -> object:
    values = {
        "at": 0.0,
        "rss_mb": 100.0,
        "fds": 20,
        "sockets": 4,
        "active_calls": 0,
        "leases_in_use": 0,
        "tasks": 7,
    }
    values.update(changes)
    return probe.Sample(**values)


def test_slope_per_hour_is_the_least_squares_fit(bench: dict[str, ModuleType]) -> None:
    slope = bench["soak_probe"].slope_per_hour
    # 1 MB per minute, each minute sampled twice with noise that cancels out.
    points = [(60.0 * i, 100.0 + i + noise) for i in range(10) for noise in (-0.5, 0.5)]
    assert slope(points) == pytest.approx(60.0)
    assert slope([(0.0, 5.0)]) == 0.0
    assert slope([(1.0, 5.0), (1.0, 9.0)]) == 0.0


@pytest.mark.parametrize(
    ("changes", "open_models", "slope", "expected"),
    [
        ({}, 0, 0.0, []),
        ({"fds": 22, "sockets": 6}, 0, 0.0, []),  # within the slack
        ({"active_calls": 1}, 0, 0.0, ["active calls"]),
        ({"leases_in_use": 2}, 0, 0.0, ["leases in use"]),
        ({"tasks": 8}, 0, 0.0, ["asyncio tasks"]),
        ({"fds": 30}, 0, 0.0, ["descriptors"]),
        ({"sockets": 9}, 0, 0.0, ["sockets"]),
        ({}, 1, 0.0, ["model connections"]),
        ({}, 0, 50.0, ["memory grows"]),
    ],
)
def test_find_leaks_flags_each_kind(
    bench: dict[str, ModuleType],
    changes: dict[str, float],
    open_models: int,
    slope: float,
    expected: list[str],
) -> None:
    probe = bench["soak_probe"]
    leaks = probe.find_leaks(
        sample(probe),
        sample(probe, **changes),
        open_model_sockets=open_models,
        slope_mb_per_hour=slope,
        judged_seconds=600.0,
    )
    assert [leak.split(" ")[0] for leak in leaks] == [e.split(" ")[0] for e in expected]
    assert all(any(e in leak for leak in leaks) for e in expected)


def test_memory_slope_is_not_judged_on_a_short_run(bench: dict[str, ModuleType]) -> None:
    probe = bench["soak_probe"]
    leaks = probe.find_leaks(
        sample(probe),
        sample(probe),
        open_model_sockets=0,
        slope_mb_per_hour=500.0,
        judged_seconds=60.0,
    )
    assert leaks == []


async def test_a_short_soak_churns_and_leaks_nothing(bench: dict[str, ModuleType]) -> None:
    soak = bench["soak"]
    config = soak.SoakConfig(
        minutes=0.08,
        concurrency=3,
        min_call_seconds=0.5,
        max_call_seconds=1.5,
        sample_seconds=1.0,
        healthy_servers=1,
        die_after=0.3,
        handshake_timeout=1.0,
        pending_timeout=1.0,
        settle_seconds=10.0,
        priming_call_seconds=0.5,
    )
    lines: list[str] = []
    async with asyncio.timeout(60):
        result = await soak.run_soak(config, lines.append)
    assert result.leaks == [], lines
    assert sum(result.outcomes.values()) >= 3
    assert any(outcome.endswith(":caller") for outcome in result.outcomes), result.outcomes
    # The bridge exported what the judge reads (-1 means a metric was missing).
    assert result.baseline.tasks > 0
    assert result.baseline.leases_in_use == 0
    assert sum(result.bridge_calls.values()) >= 3, result.bridge_calls
    assert result.samples
    assert all(s.rss_mb > 0 and s.fds > 0 for s in result.samples)
    assert lines[0].startswith("baseline")
    assert lines[-1].startswith("settled")
    section = soak.render_section(result, "bench/soak.py --minutes 0.1")
    assert "**Verdict: no leak.**" in section


async def test_bridge_metrics_export_tasks_and_process_figures(
    bench: dict[str, ModuleType],
) -> None:
    parse = bench["soak_probe"].parse_metrics
    metrics = BridgeMetrics()
    before = parse(metrics.render().decode())
    blockers = [asyncio.create_task(asyncio.Event().wait()) for _ in range(3)]
    try:
        during = parse(metrics.render().decode())
    finally:
        for task in blockers:
            task.cancel()
        await asyncio.gather(*blockers, return_exceptions=True)
    assert during["phonebridge_asyncio_tasks"] == before["phonebridge_asyncio_tasks"] + 3
    assert during["process_open_fds"] > 0
    assert during["process_resident_memory_bytes"] > 0


def test_task_gauge_is_absent_rather_than_zero_off_the_loop(
    bench: dict[str, ModuleType],
) -> None:
    rendered = bench["soak_probe"].parse_metrics(BridgeMetrics().render().decode())
    assert "phonebridge_asyncio_tasks" not in rendered
    assert "process_open_fds" in rendered
