"""The load benchmark's machinery, so it cannot rot between the measured runs.

Two calls for two seconds through a real `phonebridge serve` (one worker and
two): the callers, the model farm and the bridge's own metrics must agree on
what happened. Figures are not judged here (they belong in BENCHMARKS.md);
that the measurement works is.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from ..conftest import HEAVY

pytestmark = HEAVY  # a real server under generated load: one at a time (tests/conftest.py)

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The bench scripts import each other as top-level modules, as when run."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("bench_load")


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_tiny_load_run_measures_every_figure(load: ModuleType, workers: int) -> None:
    args = load.parse_args(
        ["--levels", "2", "--seconds", "2", "--settle", "1", "--workers", str(workers)]
    )
    args.serve_cpus = "0-1"  # whatever this machine has; pinning is for real runs
    result = await load.run_level(2, args)
    assert result.failed_calls == 0
    assert result.dropped_frames == 0
    # Every figure came from somewhere: the bridge's metrics, the farm, the callers.
    for figure in (
        result.inbound_p50_us,
        result.outbound_p50_us,
        result.cpu_ms_per_call_second,
        result.hangup_p50_ms,
        result.first_audio_bridge_p50_ms,
        result.outbound_transit_p50_ms,
        result.loop_lag_p99_ms,
    ):
        assert not math.isnan(figure)
        assert figure > 0
    assert result.inbound_p50_us <= result.inbound_p99_us <= result.inbound_max_us
    assert result.loop_lag_p50_ms <= result.loop_lag_p99_ms


def test_calls_per_core_stops_at_the_first_failing_level(load: ModuleType) -> None:
    def level(calls: int, lag_ms: float) -> object:
        return SimpleNamespace(calls=calls, passes=lag_ms < 20)

    assert load.calls_per_core([level(30, 3), level(40, 9), level(50, 12)]) == 50
    # 60 passed on a quiet window after 55 failed: 50 is what held.
    results = [level(60, 16), level(50, 8), level(55, 41), level(45, 9)]
    assert load.calls_per_core(results) == 50
    assert load.calls_per_core([level(30, 25)]) == 0


def test_histogram_quantiles_interpolate_like_promql(load: ModuleType) -> None:
    stats = importlib.import_module("load_stats")
    histogram = stats.Histogram((0.1, 0.2, math.inf), (10.0, 20.0, 20.0))
    assert histogram.quantile(0.5) == pytest.approx(0.1)
    assert histogram.quantile(0.75) == pytest.approx(0.15)
    assert histogram.max_bound() == 0.2
    assert histogram.count_above(0.1) == 10.0
    merged = stats.merge(
        [stats.Scrape({("h", ()): histogram}, {}), stats.Scrape({("h", ()): histogram}, {})]
    )
    assert merged.histogram("h").counts == (20.0, 40.0, 40.0)
