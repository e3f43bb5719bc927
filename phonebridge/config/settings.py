"""The :class:`Settings` dataclass: every value read in :meth:`Settings.from_env`, validated.

Construction runs every check of the package in one pass (``__post_init__``)
and raises one :class:`SettingsError` listing all problems; the checks live
with their concern (telephony, providers, limits, cluster, services, outbound,
carriers). The derived URLs (webhook, stream, action) are built here, from
the one normalised public URL.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlunsplit

from pydantic import SecretStr

from phonebridge.config.carriers import CarrierSettings
from phonebridge.config.cluster import (
    check_database,
    check_object_store,
    check_redis,
    check_replica,
)
from phonebridge.config.common import (
    DEFAULT_DATA_DIR,
    DEFAULT_PERSONAS_DIR,
    REPLICA_PREFIX,
    TWILIO_PREFIX,
    LogFormat,
    SettingsError,
    StreamSignaturePolicy,
)
from phonebridge.config.limits import check_limits
from phonebridge.config.outbound import check_outbound
from phonebridge.config.personas import persona_problems
from phonebridge.config.providers import check_hosted_endpoints, check_providers
from phonebridge.config.reader import (
    Reader,
    environ_or_os,
    path_or_none,
    personas_directory,
    split_list,
    sqlite_database_url,
)
from phonebridge.config.services import (
    DEFAULT_ANSWER_WITHIN_SECONDS,
    check_transcription,
    check_webhooks,
)
from phonebridge.config.telephony import (
    check_public_url,
    check_stream_url,
    check_twilio,
)
from phonebridge.models.redact import redact_url

if TYPE_CHECKING:
    from phonebridge.personas.book import PersonaBook


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated settings. Construct with :meth:`from_env`, or directly in tests."""

    public_url: str
    twilio_auth_token: SecretStr | None = None
    twilio_account_sid: str | None = None
    twilio_api_url: str | None = None  # None: https://api.twilio.com
    skip_twilio_signature: bool = False
    personas_dir: Path = DEFAULT_PERSONAS_DIR
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None  # None: SQLite under data_dir (see effective_database_url)
    personaplex_urls: tuple[str, ...] = ()
    personaplex_handshake_timeout: float = 30.0
    polargrid_api_key: SecretStr | None = None
    polargrid_region: str = "yto-01"
    polargrid_base_url: str | None = None  # None: derived from the region
    fal_key: SecretStr | None = None
    fal_base_url: str | None = None  # None: wss://fal.run
    max_calls: int = 50
    # This replica's id in a cluster (PHONEBRIDGE_REPLICA_ID): its streams and
    # <Connect action> callbacks live under /twilio/r/<id>/ so the edge proxy
    # can route them back to the replica holding the call (see sticky_prefix).
    replica_id: str | None = None
    # Set by `serve --workers N` for each worker process, never by hand: a
    # worker is a replica on one host, with the id <replica id>-w<N> (or w<N>).
    worker: int | None = None
    # Toll-fraud guard (phonebridge/calls/guard.py); 0 turns a limit off.
    caller_max_calls_per_hour: int = 10
    caller_max_concurrent: int = 2
    max_new_calls_per_minute: int = 60
    browser_calls_per_user: int = 1
    stream_signature: StreamSignaturePolicy = StreamSignaturePolicy.STRICT
    pending_timeout: float = 15.0
    dashboard_token: SecretStr | None = None
    log_format: LogFormat = LogFormat.TEXT
    log_level: str = "INFO"
    transcribe_url: str | None = None
    transcribe_key: SecretStr | None = None
    transcribe_model: str | None = None
    retention_days: int | None = None
    webhook_secret: SecretStr | None = None
    call_ended_webhook_url: str | None = None
    recording_link_seconds: float = 86400.0
    answer_within_seconds: float = DEFAULT_ANSWER_WITHIN_SECONDS
    host: str = "127.0.0.1"
    port: int = 8080
    # Outbound calls (phonebridge/outbound/): off unless an operator turns them on.
    outbound_enabled: bool = False
    outbound_countries: tuple[int, ...] = ()
    outbound_caller_ids: tuple[str, ...] = ()
    outbound_dnc_file: Path | None = None
    outbound_ring_seconds: int = 30
    outbound_carrier: str = "twilio"
    carriers: CarrierSettings = field(default_factory=CarrierSettings)
    # Shared coordination (phonebridge/coordination/): None keeps every lease,
    # limit and gate in this process's memory (the embedded default).
    redis_url: str | None = None
    lease_ttl_seconds: float = 10.0
    redis_timeout_seconds: float = 0.5
    # How often a replica ends the unfinished rows of replicas that are gone
    # (two passes in a row must miss a heartbeat: service.mark_crashed_replicas_forever).
    crash_check_seconds: float = 15.0
    # Object storage for recordings and transcripts (phonebridge/storage/objects.py).
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_prefix: str = ""
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    aws_region: str | None = None
    _base: SplitResult = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems: list[str] = []
        base = check_public_url(self, problems)
        object.__setattr__(self, "_base", base)
        if not problems:
            # Normalised (no trailing slash) so every user builds URLs the same way.
            object.__setattr__(self, "public_url", urlunsplit(base))
        # The order is the order problems are listed in.
        check_twilio(self, problems)
        check_providers(self, problems)
        check_hosted_endpoints(self, problems)
        check_limits(self, problems)
        check_replica(self, problems)
        check_transcription(self, problems)
        check_webhooks(self, problems)
        check_object_store(self, problems)
        check_database(self, problems)
        check_outbound(self, problems)
        problems.extend(self.carriers.problems())
        check_redis(self, problems)
        if not problems:
            check_stream_url(self, problems)
        if problems:
            raise SettingsError(problems)

    # -- construction -----------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, /, **overrides: Any) -> Settings:
        """Read settings from ``environ`` (``os.environ`` if None).

        ``overrides`` are CLI flags by field name; ``None`` values mean "flag not
        given" and are ignored. Empty variables count as unset (``FOO=`` in a
        compose file).
        """
        env = environ_or_os(environ)
        problems: list[str] = []
        reader = Reader(env, problems)
        values: dict[str, Any] = {
            "public_url": reader.text("PHONEBRIDGE_PUBLIC_URL") or "",
            "twilio_auth_token": reader.secret("TWILIO_AUTH_TOKEN"),
            "twilio_account_sid": reader.text("TWILIO_ACCOUNT_SID"),
            "twilio_api_url": reader.text("TWILIO_API_URL"),
            "skip_twilio_signature": reader.flag("PHONEBRIDGE_INSECURE_SKIP_TWILIO_SIGNATURE"),
            "personas_dir": personas_directory(env),
            "data_dir": Path(reader.text("PHONEBRIDGE_DATA") or DEFAULT_DATA_DIR),
            "database_url": reader.text("DATABASE_URL"),
            "personaplex_urls": reader.url_list("PERSONAPLEX_URLS"),
            "personaplex_handshake_timeout": reader.number("PERSONAPLEX_HANDSHAKE_TIMEOUT", 30.0),
            "polargrid_api_key": reader.secret("POLARGRID_API_KEY"),
            "polargrid_region": reader.text("POLARGRID_REGION") or "yto-01",
            "polargrid_base_url": reader.text("POLARGRID_BASE_URL"),
            "fal_key": reader.secret("FAL_KEY"),
            "fal_base_url": reader.text("FAL_BASE_URL"),
            "max_calls": reader.integer("PHONEBRIDGE_MAX_CALLS", 50),
            "replica_id": reader.text("PHONEBRIDGE_REPLICA_ID"),
            "worker": reader.integer("PHONEBRIDGE_WORKER", None),
            "caller_max_calls_per_hour": reader.integer(
                "PHONEBRIDGE_CALLER_MAX_CALLS_PER_HOUR", 10
            ),
            "caller_max_concurrent": reader.integer("PHONEBRIDGE_CALLER_MAX_CONCURRENT", 2),
            "max_new_calls_per_minute": reader.integer("PHONEBRIDGE_MAX_NEW_CALLS_PER_MINUTE", 60),
            "browser_calls_per_user": reader.integer("PHONEBRIDGE_BROWSER_CALLS_PER_USER", 1),
            "stream_signature": reader.choice(
                "PHONEBRIDGE_STREAM_SIGNATURE", StreamSignaturePolicy, StreamSignaturePolicy.STRICT
            ),
            "pending_timeout": reader.number("PHONEBRIDGE_PENDING_TIMEOUT", 15.0),
            "dashboard_token": reader.secret("PHONEBRIDGE_DASHBOARD_TOKEN"),
            "log_format": reader.choice("PHONEBRIDGE_LOG_FORMAT", LogFormat, LogFormat.TEXT),
            "log_level": (reader.text("PHONEBRIDGE_LOG_LEVEL") or "INFO").upper(),
            "transcribe_url": reader.text("PHONEBRIDGE_TRANSCRIBE_URL"),
            "transcribe_key": reader.secret("PHONEBRIDGE_TRANSCRIBE_KEY"),
            "transcribe_model": reader.text("PHONEBRIDGE_TRANSCRIBE_MODEL"),
            "retention_days": reader.integer("PHONEBRIDGE_RETENTION_DAYS", None),
            "webhook_secret": reader.secret("PHONEBRIDGE_WEBHOOK_SECRET"),
            "call_ended_webhook_url": reader.text("PHONEBRIDGE_CALL_ENDED_WEBHOOK_URL"),
            "recording_link_seconds": reader.number("PHONEBRIDGE_RECORDING_LINK_SECONDS", 86400.0),
            "answer_within_seconds": reader.number(
                "PHONEBRIDGE_ANSWER_WITHIN_SECONDS", DEFAULT_ANSWER_WITHIN_SECONDS
            ),
            "host": reader.text("PHONEBRIDGE_HOST") or "127.0.0.1",
            "port": reader.integer("PHONEBRIDGE_PORT", 8080),
            "outbound_enabled": reader.flag("PHONEBRIDGE_OUTBOUND_ENABLED"),
            "outbound_countries": reader.codes("PHONEBRIDGE_OUTBOUND_COUNTRIES"),
            "outbound_caller_ids": reader.url_list("PHONEBRIDGE_OUTBOUND_CALLER_IDS"),
            "outbound_dnc_file": path_or_none(reader.text("PHONEBRIDGE_OUTBOUND_DNC_FILE")),
            "outbound_ring_seconds": reader.integer("PHONEBRIDGE_OUTBOUND_RING_SECONDS", 30),
            "outbound_carrier": reader.text("PHONEBRIDGE_OUTBOUND_CARRIER") or "twilio",
            "carriers": CarrierSettings.read(reader),
            "redis_url": reader.text("PHONEBRIDGE_REDIS_URL"),
            "lease_ttl_seconds": reader.number("PHONEBRIDGE_LEASE_TTL_SECONDS", 10.0),
            "redis_timeout_seconds": reader.number("PHONEBRIDGE_REDIS_TIMEOUT_SECONDS", 0.5),
            "crash_check_seconds": reader.number("PHONEBRIDGE_CRASH_CHECK_SECONDS", 15.0),
            "s3_bucket": reader.text("PHONEBRIDGE_S3_BUCKET"),
            "s3_endpoint_url": reader.text("PHONEBRIDGE_S3_ENDPOINT_URL"),
            "s3_prefix": reader.text("PHONEBRIDGE_S3_PREFIX") or "",
            "aws_access_key_id": reader.secret("AWS_ACCESS_KEY_ID"),
            "aws_secret_access_key": reader.secret("AWS_SECRET_ACCESS_KEY"),
            "aws_session_token": reader.secret("AWS_SESSION_TOKEN"),
            "aws_region": reader.text("AWS_REGION") or reader.text("AWS_DEFAULT_REGION"),
        }
        values.update(_given(overrides))
        if reader.text("PHONEBRIDGE_CRASH_CHECK_SECONDS") is None and "crash_check_seconds" not in (
            _given(overrides)
        ):
            # Unset: 15 s, or the lease TTL if that is longer (the rule below).
            ttl = values["lease_ttl_seconds"]
            values["crash_check_seconds"] = max(15.0, ttl if isinstance(ttl, float) else 15.0)
        try:
            settings = cls(**values)
        except SettingsError as exc:
            problems.extend(exc.problems)
        if problems:
            raise SettingsError(problems)
        return settings

    def override(self, **changes: Any) -> Settings:
        """A copy with CLI flags applied (``None`` = not given), validated again."""
        return dataclasses.replace(self, **_given(changes))

    # -- derived values -----------------------------------------------------

    @property
    def effective_replica_id(self) -> str | None:
        """This process's replica id: ``<R>``, ``<R>-w<N>``, ``w<N>``, or None (one process).

        A worker of ``serve --workers`` is a replica on one host: worker N of
        replica R is ``R-wN``, and ``wN`` when the host has no replica id.
        """
        if self.worker is None:
            return self.replica_id
        if self.replica_id is None:
            return f"w{self.worker}"
        return f"{self.replica_id}-w{self.worker}"

    @property
    def sticky_prefix(self) -> str:
        """Where the paths that must reach *this* process live (stream, action).

        ``/twilio`` for a single process; ``/twilio/r/<replica id>`` for a
        replica (or a worker of ``serve --workers``), whose pending calls no
        other process knows: the edge proxy routes on that segment.
        """
        replica = self.effective_replica_id
        return TWILIO_PREFIX if replica is None else f"{REPLICA_PREFIX}/{replica}"

    @property
    def stream_url(self) -> str:
        """The ``<Stream url>``: ``wss://host[/prefix]/twilio[/r/<id>]/media``, no query (§1.1)."""
        return self.websocket_url(self.sticky_prefix + "/media")

    @property
    def action_url(self) -> str:
        """The ``<Connect action>`` URL Twilio requests when the stream ends."""
        return self.webhook_url(self.sticky_prefix + "/stream-ended")

    @property
    def status_callback_url(self) -> str:
        """The number's status callback (``twilio configure``).

        With coordination in Redis, the plain ``/twilio/call-status``: any
        replica takes it and tells the one holding the call
        (coordination/ ``RingingHangups``), so the number depends on no one
        replica staying alive. Without Redis, nothing crosses between
        processes: under this replica's prefix, where its pending calls are.
        """
        if self.redis_url is not None:
            return self.webhook_url(TWILIO_PREFIX + "/call-status")
        return self.webhook_url(self.sticky_prefix + "/call-status")

    def webhook_url(self, path: str) -> str:
        """The public URL of ``path`` (e.g. ``/twilio/voice``): what Twilio signs (§1.4)."""
        return urlunsplit(self._base._replace(path=self._base.path + _absolute(path)))

    def websocket_url(self, path: str) -> str:
        scheme = "wss" if self._base.scheme == "https" else "ws"
        return urlunsplit(
            self._base._replace(scheme=scheme, path=self._base.path + _absolute(path))
        )

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return sqlite_database_url(self.data_dir)

    @property
    def effective_stream_signature(self) -> StreamSignaturePolicy:
        """Without an auth token there is nothing to check the socket's signature with."""
        if self.twilio_auth_token is None:
            return StreamSignaturePolicy.OFF
        return self.stream_signature

    def check_against(self, book: PersonaBook) -> list[str]:
        """Problems between these settings and the personas: what start-up must refuse."""
        return persona_problems(self, book)

    def __repr__(self) -> str:
        parts = []
        for item in dataclasses.fields(self):
            if not item.repr:
                continue
            value = getattr(self, item.name)
            if item.name in ("database_url", "redis_url") and value is not None:
                value = redact_url(value)
            elif item.name == "personaplex_urls":
                value = tuple(redact_url(url) for url in value)
            parts.append(f"{item.name}={value!r}")
        return f"Settings({', '.join(parts)})"


# -- CLI flags (typed by field name) ------------------------------------------

_SECRET_FIELDS = frozenset(
    {
        "twilio_auth_token",
        "polargrid_api_key",
        "fal_key",
        "dashboard_token",
        "transcribe_key",
        "webhook_secret",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
    }
)
_PATH_FIELDS = frozenset({"personas_dir", "data_dir", "outbound_dnc_file"})
_ENUM_FIELDS: dict[str, type[StrEnum]] = {
    "stream_signature": StreamSignaturePolicy,
    "log_format": LogFormat,
}


def _given(changes: Mapping[str, Any]) -> dict[str, Any]:
    """CLI flag values with ``None`` (flag not given) dropped and plain strings typed."""
    return {name: _typed(name, value) for name, value in changes.items() if value is not None}


def _typed(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if name in _SECRET_FIELDS:
        return SecretStr(value)
    if name in _PATH_FIELDS:
        return Path(value)
    if name in ("personaplex_urls", "outbound_caller_ids"):
        return split_list(value)
    if name in _ENUM_FIELDS:
        kind = _ENUM_FIELDS[name]
        try:
            return kind(value.strip().lower())
        except ValueError:
            allowed = " | ".join(member.value for member in kind)
            raise SettingsError([f"{name} must be {allowed}, not {value!r}"]) from None
    return value


def _absolute(path: str) -> str:
    return path if path.startswith("/") else "/" + path
