"""Running as one of several: replica ids, Redis, the database and the object store."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from phonebridge.models.redact import redact_url

if TYPE_CHECKING:
    from phonebridge.config.settings import Settings

# A replica id is one DNS label (RFC 1123): it becomes a path segment the edge
# proxy routes on, and in Kubernetes a host name (<id>.<headless service>).
_REPLICA_ID_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_DNS_LABEL_MAX = 63
_S3_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9!_.*'()/-]*")  # S3's "safe" key characters


def check_replica(settings: Settings, problems: list[str]) -> None:
    replica = settings.replica_id
    if replica is not None and not _REPLICA_ID_PATTERN.fullmatch(replica):
        problems.append(
            f"PHONEBRIDGE_REPLICA_ID {replica!r} is not a DNS label (lower-case letters, "
            "digits and '-', not starting or ending with '-'), e.g. phonebridge-2 or 2"
        )
        return
    effective = settings.effective_replica_id
    if effective is not None and len(effective) > _DNS_LABEL_MAX:
        problems.append(
            f"PHONEBRIDGE_REPLICA_ID {replica!r} is too long: the replica id {effective!r} "
            f"must be at most {_DNS_LABEL_MAX} characters"
        )


def check_redis(settings: Settings, problems: list[str]) -> None:
    url = settings.redis_url
    if url is not None:
        shown = redact_url(url)  # a password in the URL is never shown
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 - raises ValueError on an out-of-range port
            port_ok = True
        except ValueError:
            port_ok = False
        if parts.scheme not in ("redis", "rediss") or not parts.hostname or not port_ok:
            problems.append(
                f"PHONEBRIDGE_REDIS_URL {shown!r} is not a redis:// or rediss:// URL with a "
                "host (e.g. redis://:password@redis:6379/0)"
            )
        elif parts.path not in ("", "/") and not parts.path.lstrip("/").isdigit():
            problems.append(
                f"PHONEBRIDGE_REDIS_URL {shown!r}: the path must be a database number (/0)"
            )
    ttl, timeout = settings.lease_ttl_seconds, settings.redis_timeout_seconds
    if ttl < 1:
        problems.append("PHONEBRIDGE_LEASE_TTL_SECONDS must be at least 1 second")
    if timeout <= 0:
        problems.append("PHONEBRIDGE_REDIS_TIMEOUT_SECONDS must be more than 0 seconds")
    if ttl >= 1 and settings.crash_check_seconds < ttl:
        # Two checks in a row must miss a heartbeat before a replica's calls are
        # marked crashed; after a Redis restart a live replica's heartbeat is
        # back within TTL/3 + the timeout, so checks at least a TTL apart never
        # take a live replica for a dead one.
        problems.append(
            f"PHONEBRIDGE_CRASH_CHECK_SECONDS ({settings.crash_check_seconds:g}) must be at "
            f"least PHONEBRIDGE_LEASE_TTL_SECONDS ({ttl:g}): a live replica's heartbeat may be "
            "missing for up to a third of it after a Redis restart"
        )
    elif ttl >= 1 and timeout * 4 > ttl:
        # Leases are renewed every TTL/3: a renewal that waits out its timeout
        # must still land before the lease expires.
        problems.append(
            f"PHONEBRIDGE_REDIS_TIMEOUT_SECONDS ({timeout:g}) must be at most a quarter of "
            f"PHONEBRIDGE_LEASE_TTL_SECONDS ({ttl:g}): leases are renewed every third of it"
        )


def check_object_store(settings: Settings, problems: list[str]) -> None:
    if settings.s3_bucket is None:
        if settings.s3_endpoint_url is not None or settings.s3_prefix:
            problems.append(
                "PHONEBRIDGE_S3_ENDPOINT_URL/_PREFIX are set but PHONEBRIDGE_S3_BUCKET is not: "
                "set the bucket too, or unset them"
            )
        return
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", settings.s3_bucket):
        problems.append(
            f"PHONEBRIDGE_S3_BUCKET {settings.s3_bucket[:70]!r} is not a bucket name "
            "(3-63 characters: a-z, 0-9, '.', '-')"
        )
    if settings.s3_endpoint_url is not None:
        endpoint = urlsplit(settings.s3_endpoint_url)
        if endpoint.scheme not in ("http", "https") or not endpoint.hostname:
            problems.append(
                f"PHONEBRIDGE_S3_ENDPOINT_URL {redact_url(settings.s3_endpoint_url)!r} is not an "
                "http(s) URL"
            )
    prefix = settings.s3_prefix
    if (
        not _S3_PREFIX_PATTERN.fullmatch(prefix)
        or prefix.startswith("/")
        or "//" in prefix
        or ".." in prefix.split("/")
        or len(prefix) > 200
    ):
        problems.append(
            f"PHONEBRIDGE_S3_PREFIX {prefix[:70]!r} must be a relative key prefix "
            "(letters, digits, -_.!*'()/; no leading '/', '//' or '..')"
        )
    if (settings.aws_access_key_id is None) != (settings.aws_secret_access_key is None):
        problems.append(
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together: set both, or neither "
            "(then boto3's own credential chain is used)"
        )


def check_database(settings: Settings, problems: list[str]) -> None:
    if settings.database_url is not None and "://" not in settings.database_url:
        problems.append(
            "DATABASE_URL is not a URL (e.g. sqlite+aiosqlite:///data/phonebridge.db or "
            "postgresql+asyncpg://user:pass@host/db)"
        )
