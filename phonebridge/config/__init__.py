"""Settings: the only package that reads environment variables (issue 4, "Settings").

``Settings.from_env(os.environ)`` reads and validates everything at start-up; a
missing or inconsistent setting fails with one :class:`SettingsError` listing
every problem and what to set. Everything else receives a ``Settings`` (no
global state). CLI flags are applied with ``from_env(..., **flags)`` or
:meth:`Settings.override`; both validate again.

Secrets (Twilio auth token, provider keys, dashboard token, transcription key)
are :class:`pydantic.SecretStr`, so ``repr(settings)`` and f-strings show
``**********``; read them with ``.get_secret_value()`` at the point of use.
Passwords inside URLs (database, PersonaPlex servers) are masked in ``repr``.

Where things live: :mod:`.settings` (the :class:`Settings` dataclass and
``from_env``, which runs every check below in a fixed order), :mod:`.reader`
(typed reading, ``KNOWN_VARIABLES``, unknown-variable warnings, single-value
readers for CLI commands), :mod:`.common` (``SettingsError``, the choices,
path prefixes), and one module of checks per concern: :mod:`.telephony`
(public URL, stream URL, Twilio), :mod:`.providers` (PersonaPlex, PolarGrid,
fal), :mod:`.limits`, :mod:`.services` (transcription, webhooks),
:mod:`.cluster` (replica, Redis, database, object store), :mod:`.outbound`,
:mod:`.carriers` (``CarrierSettings``) and :mod:`.personas` (settings against
personas). Every check appends one-line problems to a list; none raises.

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

from phonebridge.config.carriers import (
    CARRIERS,
    DIALLING_CARRIERS,
    CarrierSettings,
    carrier_settings_from_env,
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
from phonebridge.config.reader import (
    KNOWN_VARIABLES,
    dashboard_token_from_env,
    database_url_from_env,
    personas_directory,
    sqlite_database_url,
    unknown_variables,
)
from phonebridge.config.services import DEFAULT_ANSWER_WITHIN_SECONDS, MAX_ANSWER_WITHIN_SECONDS
from phonebridge.config.settings import Settings
from phonebridge.models.redact import redact_url

__all__ = [
    "CARRIERS",
    "DEFAULT_ANSWER_WITHIN_SECONDS",
    "DEFAULT_DATA_DIR",
    "DEFAULT_PERSONAS_DIR",
    "DIALLING_CARRIERS",
    "KNOWN_VARIABLES",
    "MAX_ANSWER_WITHIN_SECONDS",
    "REPLICA_PREFIX",
    "TWILIO_PREFIX",
    "CarrierSettings",
    "LogFormat",
    "Settings",
    "SettingsError",
    "StreamSignaturePolicy",
    "carrier_settings_from_env",
    "dashboard_token_from_env",
    "database_url_from_env",
    "personas_directory",
    "redact_url",
    "sqlite_database_url",
    "unknown_variables",
]
