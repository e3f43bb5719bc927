"""Cluster fixtures: ``start_cluster`` runs tests/cluster/helpers.py's loopback cluster.

``cluster_backend`` says which shared stores the replicas use. Here: one SQLite
file and no Redis (each replica has its own simulated servers, so no lease is
shared). Override it (e.g. with real PostgreSQL and Redis fixtures) to run the
same tests on the cluster's real stores.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .helpers import Cluster, loopback_cluster

ClusterFactory = Callable[..., AbstractAsyncContextManager[Cluster]]


@dataclass(frozen=True, slots=True)
class ClusterBackend:
    """The shared stores: a database URL (None: a SQLite file) and extra environment."""

    database_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    # One data directory for all replicas until recordings go to object storage.
    shared_data_dir: bool = True


@pytest.fixture
def cluster_backend() -> ClusterBackend:
    return ClusterBackend()


@pytest.fixture
def start_cluster(tmp_path: Path, cluster_backend: ClusterBackend) -> ClusterFactory:
    """``async with start_cluster(**options) as cluster:`` (see helpers.loopback_cluster)."""

    def factory(**options: Any) -> AbstractAsyncContextManager[Cluster]:
        env = {**cluster_backend.env, **options.pop("extra_env", {})}
        return loopback_cluster(
            tmp_path / "cluster",
            database_url=cluster_backend.database_url,
            shared_data_dir=cluster_backend.shared_data_dir,
            extra_env=env,
            **options,
        )

    return factory
