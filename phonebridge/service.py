"""The composition root: settings in, a ready-to-serve application out.

Everything with a life (the call index, the persona watcher, the bridge) is
built here from :class:`~phonebridge.config.Settings` and handed to
:func:`phonebridge.web.app.create_app`; nothing else reads settings globally.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Set
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI

from phonebridge.calls.admission import Admission
from phonebridge.calls.bridge import Bridge, BridgeConfig
from phonebridge.calls.context import ContextClient
from phonebridge.calls.guard import GuardLimits
from phonebridge.calls.journal import JournalFactory, Transcriber
from phonebridge.calls.personal import PersonalCalls
from phonebridge.calls.transfer.policy import TransferPolicies
from phonebridge.config import Settings, SettingsError
from phonebridge.coordination.build import Coordination, build_coordination
from phonebridge.errors import CoordinationError, StorageError
from phonebridge.loop_lag import watch_event_loop_lag
from phonebridge.metrics import BridgeMetrics
from phonebridge.models.base import ModelSessionFactory
from phonebridge.models.factory import (
    FalFactory,
    FalSettings,
    PersonaPlexFactory,
    PersonaPlexSettings,
    PolarGridFactory,
    PolarGridSettings,
)
from phonebridge.outbound.campaigns import CampaignRunner
from phonebridge.outbound.carrier import OutboundCarrier
from phonebridge.outbound.service import Outbound, OutboundConfig
from phonebridge.outbound.store import OutboundStore
from phonebridge.personas.reload import PersonaStore
from phonebridge.storage.archive import Archiver
from phonebridge.storage.index import CallIndex
from phonebridge.storage.objects import ObjectStore, S3ObjectStore, S3Settings
from phonebridge.storage.retention import apply_retention
from phonebridge.storage.row_spool import SPOOL_DIRNAME, RowSpool
from phonebridge.telephony.twilio.dialer import TwilioDialer
from phonebridge.telephony.twilio.entry import TwilioEntry
from phonebridge.telephony.twilio.rest import BaseUrlHttpClient, TwilioCallControl
from phonebridge.telephony.twilio.transfer import TwilioHumanCalls
from phonebridge.web.app import AppDeps, HistoryDeps, create_app
from phonebridge.web.carriers.build import carrier_routers, dialling_carriers, outbound_routers
from phonebridge.web.carriers.common import CarrierEdge
from phonebridge.web.recording_links import recording_link_router
from phonebridge.web.twilio_routes import TwilioAuth
from phonebridge.webhooks.delivery import CallSummaries
from phonebridge.webhooks.outbox import Outbox

log = logging.getLogger(__name__)

DEFAULT_TRANSCRIBE_MODEL = "whisper-1"
RETENTION_INTERVAL_SECONDS = 3600.0
CRASHED_REPLICAS_INTERVAL_SECONDS = 15.0
"""How often a replica ends the unfinished rows of replicas that are no longer alive
(the default of ``PHONEBRIDGE_CRASH_CHECK_SECONDS``)."""
TRANSCRIPTION_SETTLE = timedelta(minutes=2)
"""With post-call transcription, how long after its end a call's files wait before
upload (the caller's words are added to the transcript meanwhile)."""
CARRIER_API_TIMEOUT_SECONDS = 10.0  # a carrier REST request (answer, hang-up, transfer)

AliveReplicas = Callable[[], Awaitable[Set[str]]]
"""The ids of the replicas alive now (the coordination layer knows them)."""

Clock = Callable[[], float]


async def _repair_interrupted_calls(index: CallIndex, settings: Settings) -> None:
    crashed = await index.mark_interrupted_calls(datetime.now(UTC), data_dir=settings.data_dir)
    if crashed:
        log.warning("%d call(s) were cut by a crash; marked and repaired", len(crashed))


def object_store(settings: Settings) -> ObjectStore | None:
    """The S3 store when ``PHONEBRIDGE_S3_BUCKET`` is set; None keeps files in the data dir."""
    if settings.s3_bucket is None:
        return None

    def secret(value: Any) -> str | None:
        return None if value is None else str(value.get_secret_value())

    return S3ObjectStore(
        S3Settings(
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.aws_region,
            access_key_id=secret(settings.aws_access_key_id),
            secret_access_key=secret(settings.aws_secret_access_key),
            session_token=secret(settings.aws_session_token),
        )
    )


async def mark_crashed_replicas_forever(
    index: CallIndex,
    alive: AliveReplicas,
    settings: Settings,
    *,
    interval: float = CRASHED_REPLICAS_INTERVAL_SECONDS,
) -> None:
    """End the unfinished rows of replicas that are gone, every ``interval`` seconds.

    This replica always counts as alive. A replica is taken for gone only when
    two passes in a row miss its heartbeat: a restarted Redis comes back empty
    and every heartbeat is missing until the next tick, and marking a live
    replica's calls crashed would be wrong, while marking a dead one's a pass
    late costs nothing. A failure (coordination or index down) skips the pass
    and starts the count again.
    """
    previous: set[str] | None = None  # who was alive at the last good pass
    while True:
        try:
            living = set(await alive())
            if index.replica is not None:
                living.add(index.replica)
            if previous is not None:
                marked = await index.mark_crashed_replicas(
                    living | previous, datetime.now(UTC), data_dir=settings.data_dir
                )
                if marked:
                    log.warning("%d call(s) of replicas that are gone marked crashed", len(marked))
            previous = living
        except CoordinationError as exc:
            previous = None
            log.warning("crashed-replica pass skipped: %s", exc)
        except StorageError as exc:
            previous = None
            log.error("crashed-replica pass failed: %s", exc)
        except Exception:  # the alive-set source is another layer's: keep the loop alive
            previous = None
            log.exception("crashed-replica pass failed")
        await asyncio.sleep(interval)


def index_status(index: CallIndex, spool: RowSpool) -> str:
    """The call index's ``/readyz`` line (informational: calls go on without it)."""
    waiting = f"; {spool.waiting} call row(s) spooled" if spool.waiting else ""
    if index.up:
        return f"call index: up{waiting}"
    return f"call index: DOWN ({index.last_error}){waiting}, written when it is back"


async def repair_interrupted_calls(settings: Settings) -> None:
    """Mark and repair the calls a crash cut (for ``serve --workers``' supervisor)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    index = await CallIndex.create(settings.effective_database_url)
    try:
        await _repair_interrupted_calls(index, settings)
    finally:
        await index.close()


def twilio_human_calls(settings: Settings) -> TwilioHumanCalls | None:
    """Warm transfers' human calls, when the account SID and auth token are set (REST)."""
    sid, token = settings.twilio_account_sid, settings.twilio_auth_token
    if sid is None or token is None:
        return None
    http = None if settings.twilio_api_url is None else BaseUrlHttpClient(settings.twilio_api_url)
    control = TwilioCallControl(sid, token.get_secret_value(), http_client=http)
    return TwilioHumanCalls(
        control, webhook_url=settings.webhook_url, sticky_prefix=settings.sticky_prefix
    )


def model_factories(
    settings: Settings,
    *,
    clock: Clock,
    wall_clock: Clock = time.time,
    coordination: Coordination | None = None,
) -> dict[str, ModelSessionFactory]:
    """One factory per configured provider (hosted ones share ``coordination``'s gates).

    ``wall_clock`` (epoch seconds) only turns an HTTP-date ``Retry-After`` into
    a wait; everything else keeps time with the monotonic ``clock``.
    """
    model_log = logging.getLogger("phonebridge.models")
    factories: dict[str, ModelSessionFactory] = {}
    if settings.personaplex_urls:
        factories["personaplex"] = PersonaPlexFactory(
            PersonaPlexSettings(
                server_urls=settings.personaplex_urls,
                handshake_timeout=settings.personaplex_handshake_timeout,
            ),
            clock=clock,
            logger=model_log,
        )
    if settings.polargrid_api_key is not None:
        factories["polargrid"] = PolarGridFactory(
            PolarGridSettings(
                api_key=settings.polargrid_api_key.get_secret_value(),
                region=settings.polargrid_region,
                base_url=settings.polargrid_base_url,
            ),
            clock=clock,
            logger=model_log,
            wall_clock=wall_clock,
            retry_gate=coordination.gate("polargrid") if coordination is not None else None,
        )
    if settings.fal_key is not None:
        fal_key = settings.fal_key.get_secret_value()
        fal = (
            FalSettings(api_key=fal_key)
            if settings.fal_base_url is None
            else FalSettings(api_key=fal_key, base_url=settings.fal_base_url)
        )
        factories["fal"] = FalFactory(
            fal,
            clock=clock,
            logger=model_log,
            wall_clock=wall_clock,
            retry_gate=coordination.gate("fal") if coordination is not None else None,
        )
    return factories


async def build_app(
    settings: Settings,
    *,
    clock: Clock = time.monotonic,
    wall_clock: Clock = time.time,
    drain_seconds: float = 30.0,
    replica_id: str | None = None,
    alive_replicas: AliveReplicas | None = None,
    store: ObjectStore | None = None,
) -> FastAPI:
    """Load personas, open the call index, and assemble the app.

    ``replica_id`` names this replica in the call rows it writes (None: a
    single process); at start-up it marks only its own unfinished rows
    crashed. ``alive_replicas`` (from the coordination layer) lets it also
    mark the rows of replicas that are gone. ``store`` overrides the object
    store built from the settings (tests).

    Raises :class:`SettingsError` when the settings and the personas disagree
    (a persona needs a provider nobody configured).
    """
    personas = PersonaStore(settings.personas_dir)  # raises PersonaError on a broken directory
    problems = settings.check_against(personas.current)
    if problems:
        raise SettingsError(problems)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if replica_id is None:
        replica_id = settings.effective_replica_id
    index = await CallIndex.create(settings.effective_database_url, replica=replica_id)
    if store is None:
        store = object_store(settings)
    if settings.worker is None or replica_id is not None:
        # A lone process ends every unfinished row as crashed; a replica only
        # its own (the index marks rows by replica id), since the others' may
        # be live: a dead replica's rows are marked by the survivors. Unnamed
        # `serve --workers` workers leave it to their supervisor, which does it
        # once before any worker starts.
        await _repair_interrupted_calls(index, settings)
    if (
        settings.worker is None
        and settings.replica_id is not None
        and settings.redis_url is None
        and settings.personaplex_urls
    ):
        # Legitimate for a single named replica; a hazard for two (PROTOCOLS.md §2.1).
        log.warning(
            "replica %s keeps its self-hosted leases in memory (no PHONEBRIDGE_REDIS_URL): "
            "never let another replica use the same PERSONAPLEX_URLS",
            replica_id,
        )
    metrics = BridgeMetrics()
    coordination = build_coordination(
        redis_url=settings.redis_url,
        personaplex_urls=settings.personaplex_urls,
        guard_limits=GuardLimits(
            caller_calls_per_window=settings.caller_max_calls_per_hour,
            caller_window_seconds=3600.0,
            caller_max_concurrent=settings.caller_max_concurrent,
            global_calls_per_minute=settings.max_new_calls_per_minute,
        ),
        clock=clock,
        registry=metrics.registry,
        # This replica's id when it has one, else a random id.
        replica_id=replica_id,
        lease_ttl_seconds=settings.lease_ttl_seconds,
        redis_timeout_seconds=settings.redis_timeout_seconds,
    )
    await coordination.start()
    if alive_replicas is None and replica_id is not None and settings.redis_url is not None:
        alive_replicas = coordination.alive_replicas
    factories = model_factories(
        settings, clock=clock, wall_clock=wall_clock, coordination=coordination
    )
    admission = Admission(
        coordination.leases,
        available_providers=factories.keys(),
        max_calls=settings.max_calls,
    )
    # Closed after the drain (releases land first), before the call index.
    shutdown: list[Callable[[], Coroutine[Any, Any, None]]] = [coordination.aclose, index.close]
    transcriber: Transcriber | None = None
    if settings.transcribe_url:
        http = httpx.AsyncClient()
        shutdown.append(http.aclose)
        key = settings.transcribe_key
        transcriber = Transcriber(
            url=settings.transcribe_url,
            api_key=key.get_secret_value() if key is not None else None,
            model=settings.transcribe_model or DEFAULT_TRANSCRIBE_MODEL,
            client=http,
        )
    spool = RowSpool(settings.data_dir / SPOOL_DIRNAME, index)
    shutdown.insert(1, spool.aclose)  # stop retrying before the index closes; rows stay on disk
    metrics.watch_leases(lambda: admission.pool.in_use, admission.pool.free_count)
    webhook_http = httpx.AsyncClient()  # context lookups and call summaries
    shutdown.append(webhook_http.aclose)
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    personal = PersonalCalls(
        registry=metrics.registry,
        clock=clock,
        context=ContextClient(webhook_http, secret=secret, wall_time=wall_clock),
        answer_within_seconds=settings.answer_within_seconds,
    )
    summaries: CallSummaries | None = None
    public_routers = []
    if secret is not None:
        summaries = CallSummaries(
            outbox=Outbox.of(index),
            index=index,
            client=webhook_http,
            secret=secret,
            public_url=settings.public_url,
            data_dir=settings.data_dir,
            personas=lambda: personas.current,
            default_url=settings.call_ended_webhook_url,
            link_seconds=settings.recording_link_seconds,
            registry=metrics.registry,
            wall_time=wall_clock,
            store=store,
        )
        public_routers.append(
            recording_link_router(
                index, settings.data_dir, secret, wall_time=wall_clock, store=store
            )
        )
    journals = JournalFactory(
        data_dir=settings.data_dir,
        index=index,
        transcriber=transcriber,
        summaries=summaries,
        spool=spool,
    )
    human_calls = twilio_human_calls(settings)
    if human_calls is not None:
        shutdown.insert(0, human_calls.aclose)
    metrics.watch_call_index(lambda: index.up, lambda: spool.waiting)
    metrics.watch_lease_holders(
        coordination.replica_id, admission.pool.urls, admission.pool.held_urls
    )
    bridge = Bridge(
        config=BridgeConfig(pending_timeout=settings.pending_timeout),
        personas=lambda: personas.current,
        admission=admission,
        factories=factories,
        journals=journals,
        clock=clock,
        metrics=metrics,
        guard=coordination.guard,
        replay=coordination.replay,
        hangups=coordination.hangups,
        policies=TransferPolicies(metrics=metrics, dialer=human_calls),
        personal=personal,
    )
    twilio = TwilioEntry(
        bridge,
        stream_url=settings.stream_url,
        action_url=settings.action_url,
        human_calls=human_calls,
    )
    token = settings.twilio_auth_token
    auth = TwilioAuth(
        auth_token=token.get_secret_value() if token is not None else "",
        public_url=settings.public_url,
        stream_url=settings.stream_url,
        sticky_prefix=settings.sticky_prefix,
        verify_webhooks=not settings.skip_twilio_signature,
        stream_policy=settings.effective_stream_signature,
    )

    routers: list[APIRouter] = []
    edge: CarrierEdge | None = None
    if settings.carriers.enabled:
        carrier_http = httpx.AsyncClient(timeout=CARRIER_API_TIMEOUT_SECONDS)
        edge = CarrierEdge(
            bridge=bridge,
            public_url=settings.public_url,
            sticky_prefix=settings.sticky_prefix,
            rate=settings.carriers.rate,
            wall_clock=wall_clock,
            http=carrier_http,
        )
        routers = carrier_routers(edge, settings.carriers)
        # After the drain (calls' REST hang-ups land first), before the index closes.
        shutdown[:0] = [edge.aclose, carrier_http.aclose]

    async def watch_personas() -> None:
        # Edits are picked up by polling and on SIGHUP; a broken edit keeps the
        # previous personas in force (PersonaStore logs the file:line problems).
        loop = asyncio.get_running_loop()
        personas.install_sighup(loop)
        try:
            await personas.watch(asyncio.Event())
        finally:
            personas.remove_sighup(loop)

    async def watch_loop_lag() -> None:
        await watch_event_loop_lag(bridge.metrics.event_loop_lag)

    async def write_spooled_rows() -> None:
        # Rows a previous process could not write (the database was down).
        await spool.resume()

    background: list[Callable[[], Coroutine[Any, Any, None]]] = [
        watch_personas,
        watch_loop_lag,
        coordination.run_forever,
        # Other replicas' "hung up while ringing" (cancelled at shutdown, after the drain).
        bridge.listen_for_ringing_hangups,
        write_spooled_rows,
    ]
    # One process per set of rows uploads them: each replica its own; with
    # unnamed `serve --workers` (one shared data dir) worker 0.
    if store is not None and (replica_id is not None or settings.worker in (None, 0)):
        archiver = Archiver(
            index,
            store,
            settings.data_dir,
            settle=TRANSCRIPTION_SETTLE if transcriber is not None else timedelta(0),
        )
        log.info("recordings and transcripts also go to %s", store.description)
        background.append(archiver.run_forever)
    if alive_replicas is not None and replica_id is not None:
        watched = alive_replicas

        async def mark_crashed_replicas() -> None:
            await mark_crashed_replicas_forever(
                index, watched, settings, interval=settings.crash_check_seconds
            )

        background.append(mark_crashed_replicas)
    # The outbound tables live in the call index (migration 0006): one engine, one pool.
    outbound_store = OutboundStore(index.engine)

    def wall() -> datetime:
        return datetime.fromtimestamp(wall_clock(), UTC)

    outbound = _outbound(
        settings,
        bridge=bridge,
        twilio=twilio,
        personas=personas,
        store=outbound_store,
        journals=journals,
        wall=wall,
        edge=edge,
    )
    if edge is not None:
        routers += outbound_routers(edge, settings.carriers, outbound, settings.public_url)
    campaigns = CampaignRunner(outbound, wall_clock=wall)
    background.append(campaigns.run_forever)
    days = settings.retention_days
    if days is not None and settings.worker in (None, 0):  # one process expires files

        async def expire_old_files() -> None:
            while True:
                try:
                    report = await apply_retention(
                        index, settings.data_dir, days, datetime.now(UTC), store=store
                    )
                    if report.expired_calls:
                        log.info(
                            "retention: expired files of %d call(s)", len(report.expired_calls)
                        )
                except StorageError as exc:
                    log.error("retention pass failed: %s", exc)
                await asyncio.sleep(RETENTION_INTERVAL_SECONDS)

        background.append(expire_old_files)
    if summaries is not None:
        # Every process sends: each due row is claimed by one of them at a time
        # (webhooks/outbox.py), and the process that ended a call usually takes
        # its summary first (it is woken at once; the others poll).
        background.append(summaries.run_forever)
    return create_app(
        AppDeps(
            bridge=bridge,
            twilio=twilio,
            twilio_auth=auth,
            carrier_routers=routers,
            background=background,
            on_shutdown=shutdown,
            drain_seconds=drain_seconds,
            outbound=(outbound, campaigns),
            public_routers=public_routers,
            coordination=coordination,
            status_lines=(lambda: index_status(index, spool),),
            history=HistoryDeps(
                index=index,
                data_dir=settings.data_dir,
                store=store,
                dashboard_token=(
                    settings.dashboard_token.get_secret_value()
                    if settings.dashboard_token is not None
                    else None
                ),
                deliveries=summaries.deliveries if summaries is not None else None,
                browser_calls_per_user=settings.browser_calls_per_user,
            ),
        )
    )


def _outbound(
    settings: Settings,
    *,
    bridge: Bridge,
    twilio: TwilioEntry,
    personas: PersonaStore,
    store: OutboundStore,
    journals: JournalFactory,
    wall: Callable[[], datetime],
    edge: CarrierEdge | None,
) -> Outbound:
    """The outbound side (docs/outbound.md); it dials only when enabled in settings.

    Each carrier whose REST credentials are set can dial out: Twilio, and the
    others when their routes are on too (web/carriers/build.py)."""
    outbound_carriers: dict[str, OutboundCarrier] = {}
    sid, token = settings.twilio_account_sid, settings.twilio_auth_token
    if sid is not None and token is not None:
        outbound_carriers["twilio"] = OutboundCarrier(
            TwilioDialer(sid, token.get_secret_value(), api_base_url=settings.twilio_api_url)
        )
    if edge is not None:
        outbound_carriers |= dialling_carriers(edge, settings.carriers, wall)
    base = settings.sticky_prefix + "/outbound/"
    return Outbound(
        config=OutboundConfig(
            enabled=settings.outbound_enabled,
            countries=settings.outbound_countries,
            caller_ids=settings.outbound_caller_ids,
            ring_seconds=settings.outbound_ring_seconds,
            pending_timeout=settings.pending_timeout,
            callback_url=lambda kind, attempt: (
                settings.webhook_url(base + kind) + f"?attempt={attempt}"
            ),
            max_calls=settings.max_calls,
            replica=settings.effective_replica_id or "",
            dnc_file=settings.outbound_dnc_file,
            carrier=settings.outbound_carrier,
        ),
        bridge=bridge,
        personas=lambda: personas.current,
        store=store,
        carriers=outbound_carriers,
        journals=journals,
        wall_clock=wall,
    )


__all__ = [
    "AliveReplicas",
    "SettingsError",
    "build_app",
    "mark_crashed_replicas_forever",
    "model_factories",
    "object_store",
]
