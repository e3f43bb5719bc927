"""The shipped Caddyfiles pass the real Caddy (Debian's ``caddy``) and route as the bridge writes.

Functional routing (streams to their replica, orphaned actions to a survivor,
webhooks to ready replicas) runs in tests/cluster with the same site shape;
here every shipped file is adapted by the real binary and its routes checked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..realservers.caddy_server import caddy_binary

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ENV = {
    "BRIDGE_DOMAIN": "bridge.example.com",
    "BRIDGE_REPLICAS_HOST": "phonebridge-replicas.phonebridge.svc.cluster.local",
}
# deploy/Caddyfile runs in the caddy:2 image (docker-compose.yml) and uses
# subdirectives newer than Debian bookworm's caddy 2.6: they are checked to be
# there, and the rest of the file is validated by the installed binary.
NEWER_THAN_2_6 = ("stream_timeout", "stream_close_delay")


def caddy(*args: str, directory: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ENV, "HOME": str(directory), "XDG_DATA_HOME": str(directory)}
    return subprocess.run(
        [caddy_binary(), *args], capture_output=True, text=True, check=False, env=env, timeout=60
    )


def caddy_version(tmp_path: Path) -> tuple[int, int]:
    match = re.search(r"v?(\d+)\.(\d+)", caddy("version", directory=tmp_path).stdout)
    assert match is not None
    return int(match.group(1)), int(match.group(2))


def adapted(path: Path, tmp_path: Path) -> dict[str, Any]:
    result = caddy("adapt", "--config", str(path), "--adapter", "caddyfile", directory=tmp_path)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


@pytest.mark.parametrize("name", ["Caddyfile", "Caddyfile.workers", "Caddyfile.cluster"])
def test_caddy_validates_the_shipped_file(name: str, tmp_path: Path) -> None:
    path = DEPLOY / name
    text = path.read_text()
    if name == "Caddyfile" and caddy_version(tmp_path) < (2, 7):
        for directive in NEWER_THAN_2_6:
            assert re.search(rf"^\s+{directive} ", text, flags=re.MULTILINE), directive
        text = "\n".join(
            line
            for line in text.splitlines()
            if line.split()[:1] not in [[d] for d in NEWER_THAN_2_6]
        )
        path = tmp_path / name
        path.write_text(text)
    result = caddy("validate", "--config", str(path), "--adapter", "caddyfile", directory=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


def test_validation_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "Caddyfile"
    broken.write_text(
        (DEPLOY / "Caddyfile.cluster").read_text().replace("forward_auth", "forwardauth")
    )
    result = caddy(
        "validate", "--config", str(broken), "--adapter", "caddyfile", directory=tmp_path
    )
    assert result.returncode != 0


def dials(config: Any) -> list[str]:
    """Every upstream ``dial`` address in an adapted config."""
    if isinstance(config, dict):
        found = [config["dial"]] if isinstance(config.get("dial"), str) else []
        return found + [d for value in config.values() for d in dials(value)]
    if isinstance(config, list):
        return [d for item in config for d in dials(item)]
    return []


CALLBACKS = (
    "(stream-ended|call-status|outbound/((signalwire|telnyx|plivo|vonage|exotel)/)?"
    "(answer|status|amd|ring|hangup|event|events|machine/(voicemail|hangup)))$"
)
"""The replica-named requests any replica can answer when the one named is gone."""


@pytest.mark.parametrize("name", ["Caddyfile.workers", "Caddyfile.cluster"])
def test_replica_paths_route_by_their_id_and_orphaned_actions_fall_back(
    name: str, tmp_path: Path
) -> None:
    config = adapted(DEPLOY / name, tmp_path)
    server = next(iter(config["apps"]["http"]["servers"].values()))
    text = json.dumps(server)
    # The replica segment is captured once, as one DNS label, for both routes.
    assert text.count("^/twilio/r/([a-z0-9-]+)/" + CALLBACKS) == 1
    assert text.count("^/twilio/r/([a-z0-9-]+)/") >= 2
    if name == "Caddyfile.cluster":
        replica = "{http.regexp.replica.1}." + ENV["BRIDGE_REPLICAS_HOST"] + ":8080"
        pool = {"phonebridge:8080"}
    else:
        replica = "{replica_upstream}"  # the map's output, from the same capture
        pool = {"127.0.0.1:8080", "127.0.0.1:8081"}
    addresses = dials(server["routes"])
    # Stream, action probe and action: to the replica named in the path.
    assert addresses.count(replica) == 3
    assert pool <= set(addresses)
    # A <Connect action> whose replica is gone goes to the pool.
    errors = json.dumps(server["errors"])
    assert "stream-ended" in errors
    assert pool <= set(dials(server["errors"]))


def test_the_edge_configmap_ships_caddyfile_cluster() -> None:
    (config,) = [
        doc
        for doc in yaml.safe_load_all((DEPLOY / "k8s" / "edge.yaml").read_text())
        if doc["kind"] == "ConfigMap"
    ]
    assert config["data"]["Caddyfile"] == (DEPLOY / "Caddyfile.cluster").read_text()


def test_every_callback_that_can_outlive_its_replica_falls_back_but_no_socket_does() -> None:
    """The failover regexp covers each carrier's outbound callbacks and the status
    callback (any replica settles them from the shared rows), never a media socket
    (only the replica holding the call can take its stream)."""
    text = (DEPLOY / "Caddyfile.cluster").read_text()
    (pattern,) = set(re.findall(r"path_regexp replica (\^\S+\$)", text))
    falls_back = [
        "stream-ended",
        "call-status",
        "outbound/answer",
        "outbound/status",
        "outbound/amd",
        "outbound/signalwire/answer",
        "outbound/signalwire/amd",
        "outbound/telnyx/events",
        "outbound/plivo/ring",
        "outbound/plivo/hangup",
        "outbound/plivo/machine/voicemail",
        "outbound/vonage/answer",
        "outbound/vonage/event",
        "outbound/exotel/status",
    ]
    for tail in falls_back:
        assert re.fullmatch(pattern, f"/twilio/r/pb-1/{tail}"), tail
    for tail in ["media", "outbound/exotel/media", "signalwire/media", "stream-ended/x"]:
        assert not re.fullmatch(pattern, f"/twilio/r/pb-1/{tail}"), tail
