"""Prometheus alert rules pass ``promtool``; the Grafana dashboard reads real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from phonebridge.metrics import BridgeMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "phonebridge-cluster.json"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        raise RuntimeError("promtool is not installed: run deploy/bootstrap.sh --test")
    return found


def check_rules(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def exposed_metric_names() -> set[str]:
    """Every series name the bridge's /metrics can serve, from its ``# TYPE`` lines.

    Labelled metrics have no samples until a label value is used, so the
    declared families are read, with a histogram's _bucket/_sum/_count.
    """
    names: set[str] = set()
    metrics = BridgeMetrics()
    metrics.watch_leases(lambda: 0, lambda: 0)  # as service.build_app does
    metrics.watch_lease_holders("pb-0", ["ws://gpu-1:8998"], set)
    for line in metrics.render().decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names |= {name + "_bucket", name + "_sum", name + "_count"}
    return names


def test_promtool_accepts_the_alert_rules() -> None:
    result = check_rules(ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "alerts.yml"
    broken.write_text(ALERTS.read_text().replace("== 0", "== = 0", 1))
    assert check_rules(broken).returncode != 0


def test_alerts_cover_the_cluster_failures() -> None:
    rules = [
        rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    ]
    names = {rule["alert"] for rule in rules}
    assert {
        "PhonebridgeReplicaDown",
        "PhonebridgeRedisDown",
        "PhonebridgeHighRefusedCalls",
        "PersonaPlexServerBusyWithoutLease",
    } <= names
    exposed = exposed_metric_names()
    for rule in rules:
        assert rule["annotations"]["summary"]
        for name in re.findall(r"\bphonebridge_[a-z_]+", rule["expr"]):
            assert name in exposed, (rule["alert"], name)


def panel_metric_names(dashboard: dict[str, Any]) -> set[str]:
    return {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bphonebridge_[a-z_]+", target["expr"])
    }


def test_dashboard_is_json_and_its_panels_read_metrics_the_bridge_exposes() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    names = panel_metric_names(dashboard)
    assert len(names) >= 8
    exposed = exposed_metric_names()
    assert "phonebridge_active_calls" in exposed  # the rendering was read, not nothing
    missing = names - exposed
    assert not missing, missing


@pytest.mark.parametrize("name", ["phonebridge_calls_totl", "phonebridge_no_such_metric"])
def test_a_misspelt_panel_metric_is_caught(name: str) -> None:
    assert name not in exposed_metric_names()
