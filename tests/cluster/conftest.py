"""Cluster fixtures: the shared parts, and ``start_cluster`` (tests/cluster/helpers.py).

The replicas share what a production cluster shares, each a real server on
loopback started here:

- one real PostgreSQL (tests/realservers/postgres_server.py; one server for the
  session, a fresh empty database per test) as the call index;
- one real ``redis-server`` per test (tests/realservers/redis_server.py) for
  leases, the guard, replay memory and heartbeats;
- moto's S3 server, a TEST DOUBLE of the S3 API (tests/realservers/moto_s3.py;
  one for the session, a fresh bucket per test): each replica keeps its own
  data directory as its spool and uploads there, so a replica serves another
  replica's calls from the bucket.

Lease TTL, Redis timeout and the crashed-replica check are short so a dead
replica's servers and rows are dealt with within seconds.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from ..realservers.moto_s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoS3
from ..realservers.postgres_server import PostgresServer, postgres_server  # noqa: F401
from ..realservers.redis_server import RedisServer
from .helpers import Cluster, loopback_cluster

ClusterFactory = Callable[..., AbstractAsyncContextManager[Cluster]]

LEASE_TTL_SECONDS = 2.0
REDIS_TIMEOUT_SECONDS = 0.25  # at most TTL/4 (phonebridge/config/)
CRASH_CHECK_SECONDS = 2.0  # at least the TTL (phonebridge/config/)

_buckets = itertools.count(1)


@dataclass(frozen=True, slots=True)
class SharedParts:
    """What every replica of one test's cluster shares."""

    postgres: PostgresServer
    database_url: str
    redis: RedisServer
    s3: MotoS3
    bucket: str

    def env(self) -> dict[str, str]:
        return {
            "PHONEBRIDGE_REDIS_URL": self.redis.url,
            "PHONEBRIDGE_LEASE_TTL_SECONDS": str(LEASE_TTL_SECONDS),
            "PHONEBRIDGE_REDIS_TIMEOUT_SECONDS": str(REDIS_TIMEOUT_SECONDS),
            "PHONEBRIDGE_CRASH_CHECK_SECONDS": str(CRASH_CHECK_SECONDS),
            "PHONEBRIDGE_S3_BUCKET": self.bucket,
            "PHONEBRIDGE_S3_ENDPOINT_URL": self.s3.url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_REGION": REGION,
            # The per-minute cap is cluster-wide through Redis; the rolling
            # restart places more than the default 60 calls a minute.
            "PHONEBRIDGE_MAX_NEW_CALLS_PER_MINUTE": "600",
        }


@pytest.fixture(scope="session")
def moto_s3_server() -> Iterator[MotoS3]:
    # moto's werkzeug logs every request: hundreds of lines per failing test.
    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    try:
        with MotoS3() as server:
            yield server
    finally:
        werkzeug.setLevel(level)


@pytest.fixture
def shared_parts(
    tmp_path: Path,
    postgres_server: PostgresServer,  # noqa: F811
    moto_s3_server: MotoS3,
) -> Iterator[SharedParts]:
    bucket = f"phonebridge-cluster-{next(_buckets)}"
    client = boto3.client(
        "s3",
        endpoint_url=moto_s3_server.url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )
    client.create_bucket(Bucket=bucket)
    client.close()
    with RedisServer(tmp_path / "redis") as redis:
        yield SharedParts(
            postgres=postgres_server,
            database_url=postgres_server.create_database(),
            redis=redis,
            s3=moto_s3_server,
            bucket=bucket,
        )


@pytest.fixture
def start_cluster(tmp_path: Path, shared_parts: SharedParts) -> ClusterFactory:
    """``async with start_cluster(**options) as cluster:`` (see helpers.loopback_cluster)."""

    def factory(**options: Any) -> AbstractAsyncContextManager[Cluster]:
        return loopback_cluster(
            tmp_path / "cluster",
            database_url=shared_parts.database_url,
            shared_env=shared_parts.env(),
            **options,
        )

    return factory
