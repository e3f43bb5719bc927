"""Where recordings and transcripts are kept for every replica: the object store.

Two implementations of one small interface (:class:`ObjectStore`):

- :class:`LocalObjectStore`: a directory (the data directory by default: a
  single process, or replicas sharing one mounted volume). Keys are paths below it.
- :class:`S3ObjectStore`: any S3-compatible service (AWS S3, MinIO, R2, Ceph).

Keys are the files' paths relative to the data directory
(:func:`phonebridge.storage.layout.call_keys`), under an optional prefix.

Why boto3 (synchronous, run in worker threads) and not aiobotocore: boto3 is
AWS's own, released in step with the S3 API, with the standard credential
chain (env, instance profile, IRSA web identity) and managed multipart
uploads (``upload_file``); aiobotocore pins narrow botocore versions and lags
them. The store is touched a few times per call (one upload at the end, a
handful of reads when someone plays it), never per audio frame, so a thread
per operation costs nothing that matters. Credentials are passed in from
:mod:`phonebridge.config` (or left to boto3's chain) and never logged; errors
are reported with the bucket and key only.

Every failure is a :class:`StorageError`; a missing object is ``None`` from
:meth:`ObjectStore.stat`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from phonebridge.errors import StorageError
from phonebridge.models.redact import redact_url
from phonebridge.storage.layout import resolve_inside

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    size: int
    etag: str
    """A strong validator (quoted, as in HTTP): changes when the content does."""


class ObjectStore(Protocol):
    """Recordings and transcripts by key; every method raises StorageError on trouble."""

    @property
    def description(self) -> str:
        """Where the objects live, for logs (no credentials)."""
        ...

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Store the file at ``path`` under ``key`` (replacing what was there)."""
        ...

    async def stat(self, key: str) -> ObjectInfo | None:
        """Size and ETag of ``key``; None when there is no such object."""
        ...

    def iter_range(self, key: str, first: int, last: int) -> AsyncIterator[bytes]:
        """Bytes ``first..last`` (inclusive) of ``key``, in chunks."""
        ...

    async def read(self, key: str) -> bytes:
        """The whole object (transcripts; small)."""
        ...

    async def download(self, key: str, path: Path) -> None:
        """Copy the object to the local file ``path``."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""
        ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in key:
        raise StorageError(f"not an object key: {key[:200]!r}")
    return key


class LocalObjectStore:
    """Objects as files below ``root`` (which need not exist yet)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def description(self) -> str:
        return f"directory {self.root}"

    def _path(self, key: str) -> Path:
        return resolve_inside(self.root, _check_key(key))

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        target = self._path(key)
        await asyncio.to_thread(self._copy, path, target)

    @staticmethod
    def _copy(source: Path, target: Path) -> None:
        try:
            if target.exists() and source.resolve() == target:
                return  # the spool is the store (the default: data dir = store)
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
                with source.open("rb") as src:
                    shutil.copyfileobj(src, tmp)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp.name, target)  # readers see the old file or the new, never half
        except OSError as exc:
            raise StorageError(f"object store: cannot copy to {target}: {exc}") from exc

    async def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = await asyncio.to_thread(path.stat)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"object store: cannot stat {key}: {exc}") from exc
        return ObjectInfo(size=st.st_size, etag=f'"{st.st_mtime_ns:x}-{st.st_size:x}"')

    async def iter_range(self, key: str, first: int, last: int) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except OSError as exc:
            raise StorageError(f"object store: cannot read {key}: {exc}") from exc
        try:
            await asyncio.to_thread(handle.seek, first)
            left = last - first + 1
            while left > 0:
                chunk = await asyncio.to_thread(handle.read, min(CHUNK_BYTES, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def read(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except OSError as exc:
            raise StorageError(f"object store: cannot read {key}: {exc}") from exc

    async def download(self, key: str, path: Path) -> None:
        await asyncio.to_thread(self._copy, self._path(key), path)

    async def delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(self._path(key).unlink, missing_ok=True)
        except OSError as exc:
            raise StorageError(f"object store: cannot delete {key}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class S3Settings:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    max_attempts: int = 2
    """botocore's own retries per operation; the archiver retries whole uploads later."""

    def __repr__(self) -> str:  # never show the keys
        return f"S3Settings(bucket={self.bucket!r}, prefix={self.prefix!r})"


class S3ObjectStore:
    """Objects in an S3 bucket, via boto3 in worker threads."""

    def __init__(self, settings: S3Settings, client: S3Client | None = None) -> None:
        self._settings = settings
        self._bucket = settings.bucket
        self._prefix = settings.prefix
        self._client = client if client is not None else _make_client(settings)

    @property
    def description(self) -> str:
        endpoint = self._settings.endpoint_url
        where = f" at {redact_url(endpoint)}" if endpoint else ""
        return f"s3://{self._bucket}/{self._prefix}{where}"

    def _key(self, key: str) -> str:
        return self._prefix + _check_key(key)

    def _error(self, what: str, key: str, exc: Exception) -> StorageError:
        # str(exc) from botocore names the operation and the service's error
        # code; it never carries credentials.
        return StorageError(f"object store: {what} s3://{self._bucket}/{self._key(key)}: {exc}")

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        try:
            await asyncio.to_thread(
                self._client.upload_file,
                str(path),
                self._bucket,
                self._key(key),
                ExtraArgs={"ContentType": content_type},
            )
        except Exception as exc:  # boto3 raises several unrelated trees (botocore, s3transfer, OS)
            raise self._error("cannot upload to", key, exc) from exc

    async def stat(self, key: str) -> ObjectInfo | None:
        try:
            head = await asyncio.to_thread(
                self._client.head_object, Bucket=self._bucket, Key=self._key(key)
            )
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise self._error("cannot stat", key, exc) from exc
        return ObjectInfo(size=int(head["ContentLength"]), etag=str(head["ETag"]))

    async def iter_range(self, key: str, first: int, last: int) -> AsyncIterator[bytes]:
        try:
            response = await asyncio.to_thread(
                self._client.get_object,
                Bucket=self._bucket,
                Key=self._key(key),
                Range=f"bytes={first}-{last}",
            )
        except Exception as exc:
            raise self._error("cannot read", key, exc) from exc
        body = response["Body"]
        try:
            while True:
                try:
                    chunk = await asyncio.to_thread(body.read, CHUNK_BYTES)
                except Exception as exc:
                    raise self._error("cannot read", key, exc) from exc
                if not chunk:
                    break
                yield chunk
        finally:
            body.close()

    async def read(self, key: str) -> bytes:
        def fetch() -> bytes:
            response = self._client.get_object(Bucket=self._bucket, Key=self._key(key))
            return response["Body"].read()

        try:
            return await asyncio.to_thread(fetch)
        except Exception as exc:
            raise self._error("cannot read", key, exc) from exc

    async def download(self, key: str, path: Path) -> None:
        try:
            await asyncio.to_thread(
                self._client.download_file, self._bucket, self._key(key), str(path)
            )
        except Exception as exc:
            raise self._error("cannot download", key, exc) from exc

    async def delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(
                self._client.delete_object, Bucket=self._bucket, Key=self._key(key)
            )
        except Exception as exc:
            raise self._error("cannot delete", key, exc) from exc


def _is_not_found(exc: Exception) -> bool:
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


def _make_client(settings: S3Settings) -> S3Client:
    import boto3  # noqa: PLC0415 - boto3 takes ~0.3 s to import; only S3 deployments pay it
    from botocore.config import Config  # noqa: PLC0415

    config = Config(
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        retries={"max_attempts": settings.max_attempts, "mode": "standard"},
    )
    # Explicit keys when configured; else boto3's own chain (instance profile, IRSA).
    session = boto3.session.Session(
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        aws_session_token=settings.session_token,
        region_name=settings.region,
    )
    return session.client("s3", endpoint_url=settings.endpoint_url, config=config)


__all__ = [
    "CHUNK_BYTES",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectStore",
    "S3ObjectStore",
    "S3Settings",
]
