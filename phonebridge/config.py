"""Settings: the only module that reads environment variables (issue 4, "Settings").

``Settings.from_env(os.environ)`` reads and validates everything at start-up; a
missing or inconsistent setting fails with one :class:`SettingsError` listing
every problem and what to set. Everything else receives a ``Settings`` (no
global state). CLI flags are applied with ``from_env(..., **flags)`` or
:meth:`Settings.override`; both validate again.

Secrets (Twilio auth token, provider keys, dashboard token, transcription key)
are :class:`pydantic.SecretStr`, so ``repr(settings)`` and f-strings show
``**********``; read them with ``.get_secret_value()`` at the point of use.
Passwords inside URLs (database, PersonaPlex servers) are masked in ``repr``.

Variables (PROTOCOLS.md section in brackets)::

    PHONEBRIDGE_PUBLIC_URL      https base URL Twilio reaches (signatures are computed on it) [§1.4]
    PHONEBRIDGE_REPLICA_ID      this replica's id in a cluster (e.g. the StatefulSet pod name
                                phonebridge-2): streams and <Connect action> under /twilio/r/<id>/
    TWILIO_AUTH_TOKEN           Twilio on; required unless another carrier is on (or
                                PHONEBRIDGE_INSECURE_SKIP_TWILIO_SIGNATURE=1)
    TWILIO_ACCOUNT_SID          optional; REST call control (hang up, transfer) [§1.5]; a persona
                                with a warm transfer needs it (the human is rung by REST)
    TWILIO_API_URL              https://api.twilio.com (an egress proxy; tests point it at a fake)
    PHONEBRIDGE_PERSONAS        persona directory (./personas)
    PHONEBRIDGE_DATA            recordings, transcripts, SQLite index (./data)
    DATABASE_URL                SQLAlchemy async URL (sqlite+aiosqlite under the data dir)
    PERSONAPLEX_URLS            comma-separated ws:// or wss:// self-hosted servers [§2]
    PERSONAPLEX_HANDSHAKE_TIMEOUT  seconds to wait for the 0x00 handshake (30) [§2.3]
    POLARGRID_API_KEY, POLARGRID_REGION (yto-01)                             [§3]
    POLARGRID_BASE_URL          wss:// base replacing wss://api.<region>.edge.polargrid.ai
                                (a private or dedicated deployment, an egress proxy)   [§3]
    FAL_KEY                                                                   [§4]
    FAL_BASE_URL                wss:// base replacing wss://fal.run (a regional endpoint) [§4]
                                Both base URLs: wss:// only (ws:// on a loopback host for
                                development), no credentials, query string or fragment: the
                                keys travel in headers, never in these URLs.
    PHONEBRIDGE_MAX_CALLS       concurrent calls per instance (50)
    PHONEBRIDGE_CALLER_MAX_CALLS_PER_HOUR  calls one caller may start per hour (10; 0 = off)
    PHONEBRIDGE_CALLER_MAX_CONCURRENT      calls one caller may have at once (2; 0 = off)
    PHONEBRIDGE_MAX_NEW_CALLS_PER_MINUTE   calls the instance (with Redis: the cluster) may
                                           start per minute (60; 0 = off)
    PHONEBRIDGE_BROWSER_CALLS_PER_USER     Talk-page calls one dashboard user may have at once (1)
    PHONEBRIDGE_STREAM_SIGNATURE  strict | log | off: the media socket's signature check [§1.4]
    PHONEBRIDGE_PENDING_TIMEOUT seconds a webhook-reserved call waits for its stream (15)
    PHONEBRIDGE_DASHBOARD_TOKEN bearer token for the dashboard and API (unset = loopback only)
    PHONEBRIDGE_LOG_FORMAT      text | json;  PHONEBRIDGE_LOG_LEVEL (INFO)
    PHONEBRIDGE_TRANSCRIBE_URL, _KEY, _MODEL  optional post-call transcription endpoint
    PHONEBRIDGE_RETENTION_DAYS  delete recordings older than this (unset = keep)
    PHONEBRIDGE_WEBHOOK_SECRET  shared secret that signs context lookups, call summaries and
                                recording links (docs/webhooks.md); needed by personas with
                                context or webhooks, and by PHONEBRIDGE_CALL_ENDED_WEBHOOK_URL
    PHONEBRIDGE_CALL_ENDED_WEBHOOK_URL  where every call's summary is POSTed (a persona's
                                webhooks.call_ended overrides it; unset = none)
    PHONEBRIDGE_RECORDING_LINK_SECONDS  how long a summary's recording link works (86400)
    PHONEBRIDGE_ANSWER_WITHIN_SECONDS  hold the voice webhook's answer until the model is
                                ready, at most this long (3; 0 = answer at once; max 10)
    PHONEBRIDGE_S3_BUCKET       recordings + transcripts also go to this bucket (unset: local only)
    PHONEBRIDGE_S3_ENDPOINT_URL an S3-compatible endpoint (MinIO, R2, ...; unset = AWS)
    PHONEBRIDGE_S3_PREFIX       key prefix inside the bucket (e.g. phonebridge/; default none)
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION (or
                                AWS_DEFAULT_REGION): S3 credentials; unset = boto3's own chain
                                (instance profile, IRSA web identity, ~/.aws)
    PHONEBRIDGE_HOST (127.0.0.1), PHONEBRIDGE_PORT (8080)
    PHONEBRIDGE_REDIS_URL       redis:// or rediss:// state shared by replicas (unset = one process)
    PHONEBRIDGE_LEASE_TTL_SECONDS  seconds a dead replica's GPU lease outlives it (10)
    PHONEBRIDGE_REDIS_TIMEOUT_SECONDS  bound on every Redis request (0.5)
    PHONEBRIDGE_CRASH_CHECK_SECONDS  how often survivors look for a dead replica's calls
                                (15, or the lease TTL if longer; at least the lease TTL)
    PHONEBRIDGE_INSECURE_SKIP_TWILIO_SIGNATURE=1  development only: accept unsigned webhooks
    PHONEBRIDGE_OUTBOUND_ENABLED=1  allow outbound calls and campaigns (off by default; see
                                docs/outbound.md)
    PHONEBRIDGE_OUTBOUND_COUNTRIES  comma-separated country calling codes that may be dialled (1,44)
    PHONEBRIDGE_OUTBOUND_CALLER_IDS comma-separated E.164 numbers that may be the caller ID
                                (the first is the default); the dialling carrier's numbers
    PHONEBRIDGE_OUTBOUND_DNC_FILE   optional do-not-call file, one E.164 number a line (# comments)
    PHONEBRIDGE_OUTBOUND_RING_SECONDS  how long an outbound call rings before no-answer (30)
    PHONEBRIDGE_OUTBOUND_CARRIER    one of DIALLING_CARRIERS (twilio, signalwire, telnyx, plivo,
                                vonage, exotel): dials the calls of personas not bound to a
                                carrier (twilio); a persona's ``carrier:`` wins

The public URL must be https://: Twilio opens media streams only over wss://,
and the stream URL is the public URL with that scheme (one rule, shared with
the TwiML builder: phonebridge/telephony/twilio/stream_url.py).

Further carriers (CARRIERS.md; docs/carriers.md). A carrier whose verification
secret is unset is **off**: its routes answer 404. Set one without the values
it needs alongside and start-up fails with one line saying what is missing::

    PHONEBRIDGE_CARRIER_RATE    8000 | 16000: the rate asked of carriers that offer wideband (16000)
    TELNYX_PUBLIC_KEY           on: the portal's Ed25519 webhook public key (base64)
    TELNYX_API_KEY              required with it: Call Control answers by REST
    TELNYX_API_URL              https://api.telnyx.com (tests point it at a simulator)
    TELNYX_CONNECTION_ID        optional: the Call Control application outbound calls are
                                dialled from (``POST /v2/calls`` ``connection_id``)
    PLIVO_AUTH_TOKEN            on: V3 webhook signatures;  PLIVO_AUTH_ID  required with it (REST)
    PLIVO_API_URL               https://api.plivo.com
    VONAGE_SIGNATURE_SECRET     on: signed webhooks and the socket's JWT (HS256)
    VONAGE_API_KEY              optional: the JWTs' api_key claim must be this
    VONAGE_APPLICATION_ID, VONAGE_PRIVATE_KEY  optional pair: outbound calls (RS256, PEM)
    VONAGE_API_SECRET           optional: only ``phonebridge vonage configure`` (Basic auth)
    VONAGE_API_URL              https://api.nexmo.com
    SIGNALWIRE_SIGNING_KEY      on: cXML webhook signatures
    SIGNALWIRE_PROJECT_ID, SIGNALWIRE_API_TOKEN, SIGNALWIRE_SPACE_URL  optional trio: REST
    EXOTEL_BASIC_USER, EXOTEL_BASIC_PASSWORD   on (pair): Basic auth Exotel sends from the URL
    EXOTEL_ALLOWED_IPS          on: comma-separated addresses/networks Exotel calls from
    EXOTEL_ACCOUNT_SID, EXOTEL_API_KEY, EXOTEL_API_TOKEN  optional trio: outbound calls
                                (Connect Voice AI, ``Calls/connect``; Basic API key:token)
    EXOTEL_API_URL              https://api.in.exotel.com (Mumbai; Singapore: https://api.exotel.com)
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from pydantic import SecretStr

from phonebridge.errors import ConfigError
from phonebridge.models.redact import redact_url
from phonebridge.telephony.exotel.auth import parse_networks
from phonebridge.telephony.telnyx.signature import load_public_key
from phonebridge.telephony.twilio.stream_url import stream_url_problem
from phonebridge.telephony.vonage.dialer import private_key_problem

if TYPE_CHECKING:
    from phonebridge.personas.book import PersonaBook

DEFAULT_PERSONAS_DIR = Path("personas")
DEFAULT_DATA_DIR = Path("data")
TWILIO_PREFIX = "/twilio"
DEFAULT_ANSWER_WITHIN_SECONDS = 3.0
"""Why 3 s: conditioning took 2-3 s on the real server code with a tiny model; a
GPU server under load takes longer, and past the bound the call is answered
anyway. 3 s keeps 12 s of Twilio's 15 s webhook timeout in hand."""
MAX_ANSWER_WITHIN_SECONDS = 10.0
REPLICA_PREFIX = TWILIO_PREFIX + "/r"

# The region becomes part of a host name (api.<region>.edge.polargrid.ai, §3):
# a strict pattern keeps a stray value from pointing the key at another host.
# A replica id is one DNS label (RFC 1123): it becomes a path segment the edge
# proxy routes on, and in Kubernetes a host name (<id>.<headless service>).
_REPLICA_ID_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_DNS_LABEL_MAX = 63
_REGION_PATTERN = re.compile(r"^[a-z]{2,5}-[0-9]{2}$")
_HOST_PATTERN = re.compile(r"[A-Za-z0-9.-]+|[0-9A-Fa-f:.]+")  # a name, IPv4 or IPv6
_PATH_PATTERN = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")  # RFC 3986 pchar and "/"
_ACCOUNT_SID_PATTERN = re.compile(r"^AC[0-9a-fA-F]{32}$")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class SettingsError(ConfigError):
    """Settings are missing or inconsistent; ``problems`` says what to set."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(
            "invalid settings:\n" + "\n".join(f"  - {problem}" for problem in problems)
        )


class StreamSignaturePolicy(StrEnum):
    """What to do with the media socket's X-Twilio-Signature (§1.4)."""

    STRICT = "strict"  # reject an upgrade without a valid signature (default)
    LOG = "log"  # accept, but log what arrived (to learn what the real Twilio sends)
    OFF = "off"  # no check; the one-time stream token still binds it to a webhook


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


CARRIERS = ("telnyx", "plivo", "vonage", "signalwire", "exotel")
"""The carriers besides Twilio (phonebridge/telephony/<carrier>/)."""
DIALLING_CARRIERS = ("twilio", "signalwire", "telnyx", "plivo", "vonage", "exotel")
"""The carriers outbound calls can be placed through (docs/outbound.md)."""


@dataclass(frozen=True, slots=True)
class CarrierSettings:
    """Credentials of the further carriers; a carrier is on when its secret is set."""

    rate: int = 16_000
    telnyx_public_key: str | None = None
    telnyx_api_key: SecretStr | None = None
    telnyx_api_url: str = "https://api.telnyx.com"
    telnyx_connection_id: str | None = None
    plivo_auth_id: str | None = None
    plivo_auth_token: SecretStr | None = None
    plivo_api_url: str = "https://api.plivo.com"
    vonage_signature_secret: SecretStr | None = None
    vonage_api_key: str | None = None
    vonage_application_id: str | None = None
    vonage_private_key: SecretStr | None = None
    vonage_api_secret: SecretStr | None = None  # the Application API only (configure)
    vonage_api_url: str = "https://api.nexmo.com"
    signalwire_signing_key: SecretStr | None = None
    signalwire_project_id: str | None = None
    signalwire_api_token: SecretStr | None = None
    signalwire_space_url: str | None = None
    exotel_basic_user: str | None = None
    exotel_basic_password: SecretStr | None = None
    exotel_allowed_ips: str | None = None
    exotel_account_sid: str | None = None
    exotel_api_key: str | None = None
    exotel_api_token: SecretStr | None = None
    exotel_api_url: str = "https://api.in.exotel.com"

    @property
    def enabled(self) -> tuple[str, ...]:
        on = {
            "telnyx": self.telnyx_public_key is not None,
            "plivo": self.plivo_auth_token is not None,
            "vonage": self.vonage_signature_secret is not None,
            "signalwire": self.signalwire_signing_key is not None,
            "exotel": self.exotel_basic_user is not None or self.exotel_allowed_ips is not None,
        }
        return tuple(name for name in CARRIERS if on[name])

    def problems(self) -> list[str]:
        found: list[str] = []
        if self.rate not in (8_000, 16_000):
            found.append(f"PHONEBRIDGE_CARRIER_RATE must be 8000 or 16000, not {self.rate}")
        if self.telnyx_public_key is not None:
            try:
                load_public_key(self.telnyx_public_key)
            except ConfigError as exc:
                found.append(f"TELNYX_PUBLIC_KEY: {exc}")
        pairs = (
            ("TELNYX_PUBLIC_KEY", self.telnyx_public_key, "TELNYX_API_KEY", self.telnyx_api_key),
            ("PLIVO_AUTH_TOKEN", self.plivo_auth_token, "PLIVO_AUTH_ID", self.plivo_auth_id),
            (
                "VONAGE_APPLICATION_ID",
                self.vonage_application_id,
                "VONAGE_PRIVATE_KEY",
                self.vonage_private_key,
            ),
            (
                "EXOTEL_BASIC_USER",
                self.exotel_basic_user,
                "EXOTEL_BASIC_PASSWORD",
                self.exotel_basic_password,
            ),
        )
        for name, value, needed, other in pairs:
            if (value is None) != (other is None):
                have, lack = (name, needed) if other is None else (needed, name)
                found.append(f"{have} is set but {lack} is not: set both, or neither")
        if self.vonage_private_key is not None:
            problem = private_key_problem(self.vonage_private_key.get_secret_value())
            if problem is not None:
                found.append(f"VONAGE_PRIVATE_KEY: {problem}")
        rest = (self.signalwire_project_id, self.signalwire_api_token, self.signalwire_space_url)
        if any(v is not None for v in rest) and not all(v is not None for v in rest):
            found.append(
                "SIGNALWIRE_PROJECT_ID, SIGNALWIRE_API_TOKEN and SIGNALWIRE_SPACE_URL go "
                "together (REST call control): set all three, or none"
            )
        exotel_rest = (self.exotel_account_sid, self.exotel_api_key, self.exotel_api_token)
        if any(v is not None for v in exotel_rest) and not all(v is not None for v in exotel_rest):
            found.append(
                "EXOTEL_ACCOUNT_SID, EXOTEL_API_KEY and EXOTEL_API_TOKEN go together "
                "(outbound calls): set all three, or none"
            )
        if self.exotel_allowed_ips is not None:
            try:
                parse_networks(self.exotel_allowed_ips)
            except ConfigError as exc:
                found.append(f"EXOTEL_ALLOWED_IPS: {exc}")
        for name, url in (
            ("TELNYX_API_URL", self.telnyx_api_url),
            ("PLIVO_API_URL", self.plivo_api_url),
            ("VONAGE_API_URL", self.vonage_api_url),
            ("SIGNALWIRE_SPACE_URL", self.signalwire_space_url),
            ("EXOTEL_API_URL", self.exotel_api_url),
        ):
            if url is not None and urlsplit(url).scheme not in ("http", "https"):
                found.append(f"{name} {url!r} is not an http(s) URL")
        return found

    @classmethod
    def read(cls, reader: _Reader) -> CarrierSettings:
        return cls(
            rate=reader.integer("PHONEBRIDGE_CARRIER_RATE", 16_000),
            telnyx_public_key=reader.text("TELNYX_PUBLIC_KEY"),
            telnyx_api_key=reader.secret("TELNYX_API_KEY"),
            telnyx_api_url=reader.text("TELNYX_API_URL") or "https://api.telnyx.com",
            telnyx_connection_id=reader.text("TELNYX_CONNECTION_ID"),
            plivo_auth_id=reader.text("PLIVO_AUTH_ID"),
            plivo_auth_token=reader.secret("PLIVO_AUTH_TOKEN"),
            plivo_api_url=reader.text("PLIVO_API_URL") or "https://api.plivo.com",
            vonage_signature_secret=reader.secret("VONAGE_SIGNATURE_SECRET"),
            vonage_api_key=reader.text("VONAGE_API_KEY"),
            vonage_application_id=reader.text("VONAGE_APPLICATION_ID"),
            vonage_private_key=reader.secret("VONAGE_PRIVATE_KEY"),
            vonage_api_secret=reader.secret("VONAGE_API_SECRET"),
            vonage_api_url=reader.text("VONAGE_API_URL") or "https://api.nexmo.com",
            signalwire_signing_key=reader.secret("SIGNALWIRE_SIGNING_KEY"),
            signalwire_project_id=reader.text("SIGNALWIRE_PROJECT_ID"),
            signalwire_api_token=reader.secret("SIGNALWIRE_API_TOKEN"),
            signalwire_space_url=reader.text("SIGNALWIRE_SPACE_URL"),
            exotel_basic_user=reader.text("EXOTEL_BASIC_USER"),
            exotel_basic_password=reader.secret("EXOTEL_BASIC_PASSWORD"),
            exotel_allowed_ips=reader.text("EXOTEL_ALLOWED_IPS"),
            exotel_account_sid=reader.text("EXOTEL_ACCOUNT_SID"),
            exotel_api_key=reader.text("EXOTEL_API_KEY"),
            exotel_api_token=reader.secret("EXOTEL_API_TOKEN"),
            exotel_api_url=reader.text("EXOTEL_API_URL") or "https://api.in.exotel.com",
        )


def carrier_settings_from_env(environ: Mapping[str, str] | None = None) -> CarrierSettings:
    """Only the carrier credentials (``phonebridge dial --carrier`` signs with them)."""
    return CarrierSettings.read(_Reader(_environ(environ), []))


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
_S3_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9!_.*'()/-]*")  # S3's "safe" key characters


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
        base = _check_public_url(self, problems)
        object.__setattr__(self, "_base", base)
        if not problems:
            # Normalised (no trailing slash) so every user builds URLs the same way.
            object.__setattr__(self, "public_url", urlunsplit(base))
        _check_twilio(self, problems)
        _check_providers(self, problems)
        _check_hosted_endpoints(self, problems)
        _check_limits(self, problems)
        _check_replica(self, problems)
        _check_optional_services(self, problems)
        _check_outbound(self, problems)
        problems.extend(self.carriers.problems())
        _check_redis(self, problems)
        if not problems:
            _check_stream_url(self, problems)
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
        env = _environ(environ)
        problems: list[str] = []
        reader = _Reader(env, problems)
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
            "outbound_dnc_file": _path_or_none(reader.text("PHONEBRIDGE_OUTBOUND_DNC_FILE")),
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
        """The number's status callback (``twilio configure``): under this replica's
        prefix, since a call ringing while the webhook holds its answer is pending
        in this process's memory only."""
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
        problems: list[str] = []
        configured = {
            "personaplex": bool(self.personaplex_urls),
            "polargrid": self.polargrid_api_key is not None,
            "fal": self.fal_key is not None,
        }
        needs = {
            "personaplex": "PERSONAPLEX_URLS",
            "polargrid": "POLARGRID_API_KEY",
            "fal": "FAL_KEY",
        }
        for persona in book.personas:
            label = f"persona {persona.id!r} ({persona.source})"
            transfer = persona.transfer
            if (
                transfer is not None
                and transfer.mode == "warm"
                and (self.twilio_account_sid is None or self.twilio_auth_token is None)
            ):
                problems.append(
                    f"{label} has a warm transfer, which rings the human by REST, but "
                    "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not both set: set them, "
                    "or use mode: cold"
                )
            if self.webhook_secret is None and (
                persona.context is not None or persona.webhooks.call_ended is not None
            ):
                problems.append(
                    f"{label} calls webhooks (context or webhooks.call_ended) but "
                    "PHONEBRIDGE_WEBHOOK_SECRET is not set: every webhook is signed with it"
                )
            if not configured[persona.provider] and (
                persona.provider != "personaplex" or persona.overflow is None
            ):
                problems.append(
                    f"{label} uses provider {persona.provider} but {needs[persona.provider]} "
                    "is not set"
                    + (
                        ": set it, or add an overflow provider"
                        if persona.provider == "personaplex"
                        else ""
                    )
                )
            if persona.overflow is not None and not configured[persona.overflow]:
                problems.append(
                    f"{label} overflows to {persona.overflow} but {needs[persona.overflow]} "
                    "is not set: set it, or remove overflow"
                )
        return problems

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


def database_url_from_env(environ: Mapping[str, str] | None = None) -> str:
    """``DATABASE_URL``, else the SQLite file under ``PHONEBRIDGE_DATA``: for ``phonebridge db``,
    which needs no other setting."""
    env = _environ(environ)
    url = env.get("DATABASE_URL", "").strip()
    if url:
        return url
    return sqlite_database_url(Path(env.get("PHONEBRIDGE_DATA", "").strip() or DEFAULT_DATA_DIR))


def sqlite_database_url(data_dir: Path) -> str:
    """The default call index: a SQLite file in the data directory."""
    return f"sqlite+aiosqlite:///{(data_dir / 'phonebridge.db').as_posix()}"


def personas_directory(environ: Mapping[str, str] | None = None) -> Path:
    """``PHONEBRIDGE_PERSONAS`` or ``./personas``: for commands that need no other setting."""
    value = _environ(environ).get("PHONEBRIDGE_PERSONAS", "").strip()
    return Path(value) if value else DEFAULT_PERSONAS_DIR


def dashboard_token_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """``PHONEBRIDGE_DASHBOARD_TOKEN``, for CLI commands that call the running server's API."""
    value = _environ(environ).get("PHONEBRIDGE_DASHBOARD_TOKEN", "").strip()
    return value or None


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for ``PHONEBRIDGE_*`` variables nobody reads (typos fail silently otherwise)."""
    warnings = []
    for name in sorted(_environ(environ)):
        if name.startswith("PHONEBRIDGE_") and name not in KNOWN_VARIABLES:
            close = difflib.get_close_matches(name, sorted(KNOWN_VARIABLES), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            warnings.append(f"{name} is not a phonebridge setting{hint}")
    return warnings


KNOWN_VARIABLES = frozenset(
    {
        "PHONEBRIDGE_PUBLIC_URL",
        "PHONEBRIDGE_PERSONAS",
        "PHONEBRIDGE_DATA",
        "PHONEBRIDGE_MAX_CALLS",
        "PHONEBRIDGE_REPLICA_ID",
        "PHONEBRIDGE_WORKER",
        "PHONEBRIDGE_CALLER_MAX_CALLS_PER_HOUR",
        "PHONEBRIDGE_CALLER_MAX_CONCURRENT",
        "PHONEBRIDGE_MAX_NEW_CALLS_PER_MINUTE",
        "PHONEBRIDGE_BROWSER_CALLS_PER_USER",
        "PHONEBRIDGE_STREAM_SIGNATURE",
        "PHONEBRIDGE_PENDING_TIMEOUT",
        "PHONEBRIDGE_DASHBOARD_TOKEN",
        "PHONEBRIDGE_LOG_FORMAT",
        "PHONEBRIDGE_LOG_LEVEL",
        "PHONEBRIDGE_TRANSCRIBE_URL",
        "PHONEBRIDGE_TRANSCRIBE_KEY",
        "PHONEBRIDGE_TRANSCRIBE_MODEL",
        "PHONEBRIDGE_RETENTION_DAYS",
        "PHONEBRIDGE_WEBHOOK_SECRET",
        "PHONEBRIDGE_CALL_ENDED_WEBHOOK_URL",
        "PHONEBRIDGE_RECORDING_LINK_SECONDS",
        "PHONEBRIDGE_ANSWER_WITHIN_SECONDS",
        "PHONEBRIDGE_HOST",
        "PHONEBRIDGE_PORT",
        "PHONEBRIDGE_INSECURE_SKIP_TWILIO_SIGNATURE",
        "PHONEBRIDGE_OUTBOUND_ENABLED",
        "PHONEBRIDGE_OUTBOUND_COUNTRIES",
        "PHONEBRIDGE_OUTBOUND_CALLER_IDS",
        "PHONEBRIDGE_OUTBOUND_DNC_FILE",
        "PHONEBRIDGE_OUTBOUND_RING_SECONDS",
        "PHONEBRIDGE_OUTBOUND_CARRIER",
        "PHONEBRIDGE_REDIS_URL",
        "PHONEBRIDGE_LEASE_TTL_SECONDS",
        "PHONEBRIDGE_REDIS_TIMEOUT_SECONDS",
        "PHONEBRIDGE_CRASH_CHECK_SECONDS",
        "TWILIO_AUTH_TOKEN",
        "TWILIO_ACCOUNT_SID",
        "TWILIO_API_URL",
        "DATABASE_URL",
        "PERSONAPLEX_URLS",
        "PERSONAPLEX_HANDSHAKE_TIMEOUT",
        "POLARGRID_API_KEY",
        "POLARGRID_REGION",
        "POLARGRID_BASE_URL",
        "FAL_KEY",
        "FAL_BASE_URL",
        "PHONEBRIDGE_CARRIER_RATE",
        "TELNYX_PUBLIC_KEY",
        "TELNYX_API_KEY",
        "TELNYX_API_URL",
        "TELNYX_CONNECTION_ID",
        "PLIVO_AUTH_ID",
        "PLIVO_AUTH_TOKEN",
        "PLIVO_API_URL",
        "VONAGE_SIGNATURE_SECRET",
        "VONAGE_API_KEY",
        "VONAGE_APPLICATION_ID",
        "VONAGE_PRIVATE_KEY",
        "VONAGE_API_SECRET",
        "VONAGE_API_URL",
        "SIGNALWIRE_SIGNING_KEY",
        "SIGNALWIRE_PROJECT_ID",
        "SIGNALWIRE_API_TOKEN",
        "SIGNALWIRE_SPACE_URL",
        "EXOTEL_BASIC_USER",
        "EXOTEL_BASIC_PASSWORD",
        "EXOTEL_ALLOWED_IPS",
        "EXOTEL_ACCOUNT_SID",
        "EXOTEL_API_KEY",
        "EXOTEL_API_TOKEN",
        "EXOTEL_API_URL",
        "PHONEBRIDGE_S3_BUCKET",
        "PHONEBRIDGE_S3_ENDPOINT_URL",
        "PHONEBRIDGE_S3_PREFIX",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    }
)


# -- reading -------------------------------------------------------------------


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


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
        return _split_list(value)
    if name in _ENUM_FIELDS:
        kind = _ENUM_FIELDS[name]
        try:
            return kind(value.strip().lower())
        except ValueError:
            allowed = " | ".join(member.value for member in kind)
            raise SettingsError([f"{name} must be {allowed}, not {value!r}"]) from None
    return value


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


class _Reader:
    """Reads typed values from the environment, collecting every problem at once."""

    def __init__(self, environ: Mapping[str, str], problems: list[str]) -> None:
        self._env = environ
        self._problems = problems

    def text(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def secret(self, name: str) -> SecretStr | None:
        value = self.text(name)
        return None if value is None else SecretStr(value)

    def flag(self, name: str) -> bool:
        value = (self.text(name) or "0").lower()
        if value in _TRUE:
            return True
        if value not in _FALSE:
            self._problems.append(f"{name} must be 1 or 0 (true/false), not {value!r}")
        return False

    def integer(self, name: str, default: int | None) -> Any:
        value = self.text(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            self._problems.append(f"{name} must be a whole number, not {value!r}")
            return default

    def number(self, name: str, default: float) -> float:
        value = self.text(name)
        if value is None:
            return default
        try:
            return float(value)
        except ValueError:
            self._problems.append(f"{name} must be a number of seconds, not {value!r}")
            return default

    def choice(self, name: str, kind: type[StrEnum], default: StrEnum) -> Any:
        value = self.text(name)
        if value is None:
            return default
        try:
            return kind(value.lower())
        except ValueError:
            allowed = " | ".join(member.value for member in kind)
            self._problems.append(f"{name} must be {allowed}, not {value!r}")
            return default

    def url_list(self, name: str) -> tuple[str, ...]:
        return _split_list(self.text(name) or "")

    def codes(self, name: str) -> tuple[int, ...]:
        """Country calling codes (``1,44`` or ``+1, +44``)."""
        codes: list[int] = []
        for item in _split_list(self.text(name) or ""):
            digits = item.removeprefix("+")
            if not (digits.isascii() and digits.isdigit() and 1 <= len(digits) <= 3):
                self._problems.append(
                    f"{name}: {item!r} is not a country calling code (e.g. 1 or 44)"
                )
                continue
            codes.append(int(digits))
        return tuple(codes)


def _path_or_none(value: str | None) -> Path | None:
    return None if value is None else Path(value)


# -- validation ----------------------------------------------------------------


def _absolute(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def _check_public_url(settings: Settings, problems: list[str]) -> SplitResult:
    placeholder = urlsplit("https://public-url.invalid")
    url = settings.public_url.strip()
    if not url:
        problems.append(
            "PHONEBRIDGE_PUBLIC_URL is not set: set it to the https:// base URL Twilio "
            "reaches (e.g. https://abcd.ngrok.app); webhook signatures are checked against it"
        )
        return placeholder
    parts = urlsplit(url)
    # urlsplit silently drops tabs and newlines; a host or path with odd
    # characters would give a stream URL Twilio cannot use or sign the same way.
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or not _HOST_PATTERN.fullmatch(parts.hostname)
        or not _PATH_PATTERN.fullmatch(parts.path)
        or any(character.isspace() for character in url)
    ):
        problems.append(
            f"PHONEBRIDGE_PUBLIC_URL {url!r} is not an http(s) URL with a host "
            "(e.g. https://abcd.ngrok.app)"
        )
        return placeholder
    if parts.query or parts.fragment or parts.username or parts.password:
        problems.append(
            f"PHONEBRIDGE_PUBLIC_URL {redact_url(url)!r} must be a plain base URL: no "
            "query string, fragment or credentials (Twilio rejects a stream URL with a query)"
        )
        return placeholder
    try:
        parts.port  # noqa: B018 - raises ValueError on an out-of-range port
    except ValueError:
        problems.append(f"PHONEBRIDGE_PUBLIC_URL {url!r} has an invalid port")
        return placeholder
    return parts._replace(path=parts.path.rstrip("/"))


def _check_stream_url(settings: Settings, problems: list[str]) -> None:
    """Refuse a public URL whose stream URL the TwiML builder (and Twilio) would refuse."""
    problem = stream_url_problem(settings.stream_url)
    if problem is None:
        return
    problems.append(
        f"PHONEBRIDGE_PUBLIC_URL {settings.public_url!r} cannot be used, as the TwiML "
        f"would be refused: {problem}; use the https:// URL Twilio reaches (a TLS proxy "
        "or a tunnel such as ngrok), or `phonebridge demo` to try the bridge on this machine"
    )


def _check_replica(settings: Settings, problems: list[str]) -> None:
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


def _check_twilio(settings: Settings, problems: list[str]) -> None:
    if (
        settings.twilio_auth_token is None
        and not settings.skip_twilio_signature
        and not settings.carriers.enabled
    ):
        # Twilio is one carrier among six: a bridge for another one needs no
        # Twilio token (its routes then answer 404, like any carrier that is off).
        problems.append(
            "TWILIO_AUTH_TOKEN is not set and no other carrier is: set it to your Twilio auth "
            "token (Console > Account > API keys & tokens), or another carrier's secret "
            "(docs/carriers.md); "
            "for local development only, PHONEBRIDGE_INSECURE_SKIP_TWILIO_SIGNATURE=1 turns "
            "Twilio's check off"
        )
    sid = settings.twilio_account_sid
    if sid is not None and not _ACCOUNT_SID_PATTERN.fullmatch(sid):
        problems.append(
            f"TWILIO_ACCOUNT_SID {sid!r} is not an account SID ('AC' and 32 hex digits)"
        )
    api = settings.twilio_api_url
    if api is not None:
        # The REST client sends the account's credentials there.
        parts = urlsplit(api)
        if (
            parts.scheme not in ("https", "http")
            or not parts.hostname
            or parts.query
            or parts.fragment
            or "@" in parts.netloc
        ):
            problems.append(
                "TWILIO_API_URL is not a plain https:// base URL (no credentials, query or "
                "fragment)"
            )
        elif parts.scheme == "http" and not _is_loopback(parts.hostname):
            problems.append(
                "TWILIO_API_URL uses http://: use https:// (http only to a loopback host, "
                "for development): it carries the account's credentials"
            )


def _check_providers(settings: Settings, problems: list[str]) -> None:
    seen: set[tuple[str, str, int | None, str]] = set()
    for url in settings.personaplex_urls:
        parts = urlsplit(url)
        shown = redact_url(url)
        try:
            port = parts.port
        except ValueError:
            problems.append(f"PERSONAPLEX_URLS: {shown!r} has an invalid port")
            continue
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            problems.append(
                f"PERSONAPLEX_URLS: {shown!r} is not a ws:// or wss:// URL with a host "
                "(e.g. ws://gpu-1:8998)"
            )
            continue
        if parts.query or parts.fragment:
            problems.append(
                f"PERSONAPLEX_URLS: {shown!r} must not carry a query string; the bridge adds "
                "the prompt and voice itself"
            )
            continue
        # One server listed twice would get two leases, so two concurrent calls:
        # the second hangs silently or runs with the first's prompt (§2.5).
        key = (parts.scheme, parts.hostname.lower(), port, parts.path.rstrip("/"))
        if key in seen:
            problems.append(
                f"PERSONAPLEX_URLS lists {shown!r} twice: each server takes one call at a time"
            )
        seen.add(key)
    if not _REGION_PATTERN.fullmatch(settings.polargrid_region):
        problems.append(
            f"POLARGRID_REGION {settings.polargrid_region!r} is not a region id (e.g. yto-01)"
        )
    if settings.personaplex_handshake_timeout <= 0:
        problems.append("PERSONAPLEX_HANDSHAKE_TIMEOUT must be more than 0 seconds")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_hosted_endpoints(settings: Settings, problems: list[str]) -> None:
    """POLARGRID_BASE_URL and FAL_BASE_URL: where the provider keys are sent.

    The key goes to whatever host these name, so they are held to more than
    "is a URL": TLS (plain ws:// only to this machine, for a simulator or a
    local tunnel), and no part a key could hide in and end up in a proxy's
    access log (userinfo, query string, fragment). Problems quote the URL
    without those parts, so a key put there is not echoed either.
    """
    for name, url, key_name, key in (
        (
            "POLARGRID_BASE_URL",
            settings.polargrid_base_url,
            "POLARGRID_API_KEY",
            settings.polargrid_api_key,
        ),
        ("FAL_BASE_URL", settings.fal_base_url, "FAL_KEY", settings.fal_key),
    ):
        if url is None:
            continue
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on an out-of-range port
        except ValueError:
            problems.append(f"{name} is not a valid URL (e.g. wss://pg.example.net)")
            continue
        shown = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
        host = parts.hostname or ""
        if (
            parts.scheme not in ("wss", "ws")
            or not _HOST_PATTERN.fullmatch(host)
            or not _PATH_PATTERN.fullmatch(parts.path)
            or any(character.isspace() for character in url)
        ):
            problems.append(
                f"{name} {shown!r} is not a wss:// URL with a host (e.g. wss://pg.example.net)"
            )
        elif "@" in parts.netloc:
            problems.append(
                f"{name} {shown!r} must not carry credentials (user@): the key is sent in a header"
            )
        elif parts.query or parts.fragment or url.endswith(("?", "#")):
            problems.append(
                f"{name} {shown!r} must not carry a query string or fragment: the bridge adds "
                "its parameters and sends the key in a header"
            )
        elif parts.scheme == "ws" and not _is_loopback(host):
            problems.append(
                f"{name} {shown!r} uses ws://: use wss:// (plain ws:// only to a loopback "
                "host, for development)"
            )
        elif key is None:
            problems.append(f"{name} is set but {key_name} is not: set the key too, or unset it")
        elif len(key.get_secret_value()) >= 8 and key.get_secret_value() in url:
            # Short keys are test values; a real key is long enough not to match by chance.
            problems.append(f"{name} contains {key_name}: remove it (the key is sent in a header)")


def _check_limits(settings: Settings, problems: list[str]) -> None:
    if settings.max_calls < 1:
        problems.append("PHONEBRIDGE_MAX_CALLS must be at least 1")
    if settings.worker is not None and settings.worker < 0:
        problems.append("PHONEBRIDGE_WORKER must be 0 or more (it is set by serve --workers)")
    if settings.pending_timeout <= 0:
        problems.append("PHONEBRIDGE_PENDING_TIMEOUT must be more than 0 seconds")
    if settings.browser_calls_per_user < 1:
        problems.append("PHONEBRIDGE_BROWSER_CALLS_PER_USER must be at least 1")
    for name, value in (
        ("PHONEBRIDGE_CALLER_MAX_CALLS_PER_HOUR", settings.caller_max_calls_per_hour),
        ("PHONEBRIDGE_CALLER_MAX_CONCURRENT", settings.caller_max_concurrent),
        ("PHONEBRIDGE_MAX_NEW_CALLS_PER_MINUTE", settings.max_new_calls_per_minute),
    ):
        if value < 0:
            problems.append(f"{name} must be 0 (off) or more, not {value}")
    if not 0 <= settings.port <= 65535:
        problems.append(f"PHONEBRIDGE_PORT {settings.port} is not a TCP port (0-65535)")
    if not settings.host.strip():
        problems.append("PHONEBRIDGE_HOST must not be empty")
    if settings.retention_days is not None and settings.retention_days < 1:
        problems.append("PHONEBRIDGE_RETENTION_DAYS must be at least 1 (or unset to keep all)")
    if settings.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        problems.append(
            f"PHONEBRIDGE_LOG_LEVEL {settings.log_level!r} must be DEBUG, INFO, WARNING, "
            "ERROR or CRITICAL"
        )


def _check_optional_services(settings: Settings, problems: list[str]) -> None:
    if settings.transcribe_url is None:
        if settings.transcribe_key is not None or settings.transcribe_model is not None:
            problems.append(
                "PHONEBRIDGE_TRANSCRIBE_KEY/_MODEL are set but PHONEBRIDGE_TRANSCRIBE_URL is "
                "not: set the URL too, or unset them"
            )
    elif urlsplit(settings.transcribe_url).scheme not in ("http", "https"):
        problems.append(
            f"PHONEBRIDGE_TRANSCRIBE_URL {redact_url(settings.transcribe_url)!r} is not an "
            "http(s) URL"
        )
    _check_webhooks(settings, problems)
    _check_object_store(settings, problems)
    if settings.database_url is not None and "://" not in settings.database_url:
        problems.append(
            "DATABASE_URL is not a URL (e.g. sqlite+aiosqlite:///data/phonebridge.db or "
            "postgresql+asyncpg://user:pass@host/db)"
        )


_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


def _check_outbound(settings: Settings, problems: list[str]) -> None:
    """Outbound dialling spends money: when it is on, every guard rail must be set."""
    for number in settings.outbound_caller_ids:
        if not _E164.fullmatch(number):
            problems.append(
                f"PHONEBRIDGE_OUTBOUND_CALLER_IDS: {number!r} is not an E.164 number "
                "(e.g. +14165550123)"
            )
    if not 1 <= settings.outbound_ring_seconds <= 600:
        problems.append("PHONEBRIDGE_OUTBOUND_RING_SECONDS must be 1..600 (Twilio's range)")
    if settings.outbound_carrier not in DIALLING_CARRIERS:
        problems.append(
            f"PHONEBRIDGE_OUTBOUND_CARRIER {settings.outbound_carrier!r} cannot place calls: "
            f"one of {', '.join(DIALLING_CARRIERS)}"
        )
    if not settings.outbound_enabled:
        return
    if not settings.outbound_countries:
        problems.append(
            "PHONEBRIDGE_OUTBOUND_ENABLED is on but PHONEBRIDGE_OUTBOUND_COUNTRIES is empty: "
            "list the country calling codes that may be dialled (e.g. 1)"
        )
    if not settings.outbound_caller_ids:
        problems.append(
            "PHONEBRIDGE_OUTBOUND_ENABLED is on but PHONEBRIDGE_OUTBOUND_CALLER_IDS is empty: "
            "list the numbers of your Twilio account that may call out"
        )
    if settings.outbound_carrier == "twilio" and (
        settings.twilio_account_sid is None or settings.twilio_auth_token is None
    ):
        problems.append(
            "PHONEBRIDGE_OUTBOUND_ENABLED is on but TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN "
            "are not both set: the calls are placed through Twilio's REST API"
        )
    carriers = settings.carriers
    if settings.outbound_carrier == "signalwire" and (
        carriers.signalwire_space_url is None or carriers.signalwire_signing_key is None
    ):
        problems.append(
            "PHONEBRIDGE_OUTBOUND_CARRIER is signalwire but SIGNALWIRE_SIGNING_KEY, "
            "SIGNALWIRE_PROJECT_ID, SIGNALWIRE_API_TOKEN and SIGNALWIRE_SPACE_URL are not all "
            "set: the calls are placed through its Compatibility API"
        )
    if settings.outbound_carrier == "exotel" and (
        carriers.exotel_api_token is None or "exotel" not in carriers.enabled
    ):
        problems.append(
            "PHONEBRIDGE_OUTBOUND_CARRIER is exotel but EXOTEL_ACCOUNT_SID, EXOTEL_API_KEY and "
            "EXOTEL_API_TOKEN, and EXOTEL_BASIC_USER/_PASSWORD or EXOTEL_ALLOWED_IPS (the media "
            "socket's check), are not all set"
        )
    if settings.outbound_carrier == "plivo" and (
        carriers.plivo_auth_token is None or carriers.plivo_auth_id is None
    ):
        problems.append(
            "PHONEBRIDGE_OUTBOUND_CARRIER is plivo but PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN are "
            "not both set: the calls are placed through Plivo's Call API"
        )
    if settings.outbound_carrier == "vonage" and (
        carriers.vonage_signature_secret is None
        or carriers.vonage_application_id is None
        or carriers.vonage_private_key is None
    ):
        problems.append(
            "PHONEBRIDGE_OUTBOUND_CARRIER is vonage but VONAGE_SIGNATURE_SECRET, "
            "VONAGE_APPLICATION_ID and VONAGE_PRIVATE_KEY are not all set: the calls are "
            "placed through its Voice API"
        )
    if settings.outbound_carrier == "telnyx" and (
        carriers.telnyx_public_key is None or carriers.telnyx_connection_id is None
    ):
        problems.append(
            "PHONEBRIDGE_OUTBOUND_CARRIER is telnyx but TELNYX_PUBLIC_KEY, TELNYX_API_KEY and "
            "TELNYX_CONNECTION_ID are not all set: the calls are placed through Call Control"
        )


def _check_webhooks(settings: Settings, problems: list[str]) -> None:
    url = settings.call_ended_webhook_url
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(
                f"PHONEBRIDGE_CALL_ENDED_WEBHOOK_URL {redact_url(url)!r} is not an http(s) URL"
            )
        if settings.webhook_secret is None:
            problems.append(
                "PHONEBRIDGE_CALL_ENDED_WEBHOOK_URL is set but PHONEBRIDGE_WEBHOOK_SECRET is "
                "not: call summaries are always signed"
            )
    if settings.recording_link_seconds <= 0:
        problems.append("PHONEBRIDGE_RECORDING_LINK_SECONDS must be more than 0 seconds")
    if not 0 <= settings.answer_within_seconds <= MAX_ANSWER_WITHIN_SECONDS:
        problems.append(
            f"PHONEBRIDGE_ANSWER_WITHIN_SECONDS must be 0 (answer at once) to "
            f"{MAX_ANSWER_WITHIN_SECONDS:g} (Twilio waits 15 s for the webhook)"
        )


def _check_redis(settings: Settings, problems: list[str]) -> None:
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


def _check_object_store(settings: Settings, problems: list[str]) -> None:
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
