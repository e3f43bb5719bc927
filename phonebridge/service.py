"""The composition root: settings in, a ready-to-serve application out.

Everything with a life (the call index, the persona watcher, the bridge) is
built here from :class:`~phonebridge.config.Settings` and handed to
:func:`phonebridge.web.app.create_app`; nothing else reads settings globally.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI

from phonebridge.calls.admission import Admission, ServerPool
from phonebridge.calls.bridge import Bridge, BridgeConfig
from phonebridge.calls.guard import GuardLimits, TollFraudGuard
from phonebridge.calls.journal import JournalFactory, Transcriber
from phonebridge.config import Settings, SettingsError
from phonebridge.errors import StorageError
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
from phonebridge.outbound.carrier import TwilioDialer
from phonebridge.outbound.service import Outbound, OutboundConfig
from phonebridge.outbound.store import OutboundStore
from phonebridge.personas.reload import PersonaStore
from phonebridge.storage.index import CallIndex
from phonebridge.storage.retention import apply_retention
from phonebridge.web.app import AppDeps, HistoryDeps, create_app
from phonebridge.web.twilio_routes import TwilioAuth

log = logging.getLogger(__name__)

DEFAULT_TRANSCRIBE_MODEL = "whisper-1"
RETENTION_INTERVAL_SECONDS = 3600.0

Clock = Callable[[], float]


async def _repair_interrupted_calls(index: CallIndex, settings: Settings) -> None:
    crashed = await index.mark_interrupted_calls(datetime.now(UTC), data_dir=settings.data_dir)
    if crashed:
        log.warning("%d call(s) were cut by a crash; marked and repaired", len(crashed))


async def repair_interrupted_calls(settings: Settings) -> None:
    """Mark and repair the calls a crash cut (for ``serve --workers``' supervisor)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    index = await CallIndex.create(settings.effective_database_url)
    try:
        await _repair_interrupted_calls(index, settings)
    finally:
        await index.close()


def model_factories(
    settings: Settings, *, clock: Clock, wall_clock: Clock = time.time
) -> dict[str, ModelSessionFactory]:
    """One factory per configured provider.

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
        )
    if settings.fal_key is not None:
        fal_key = settings.fal_key.get_secret_value()
        fal = (
            FalSettings(api_key=fal_key)
            if settings.fal_base_url is None
            else FalSettings(api_key=fal_key, base_url=settings.fal_base_url)
        )
        factories["fal"] = FalFactory(fal, clock=clock, logger=model_log, wall_clock=wall_clock)
    return factories


async def build_app(
    settings: Settings,
    *,
    clock: Clock = time.monotonic,
    wall_clock: Clock = time.time,
    drain_seconds: float = 30.0,
) -> FastAPI:
    """Load personas, open the call index, and assemble the app.

    Raises :class:`SettingsError` when the settings and the personas disagree
    (a persona needs a provider nobody configured).
    """
    personas = PersonaStore(settings.personas_dir)  # raises PersonaError on a broken directory
    problems = settings.check_against(personas.current)
    if problems:
        raise SettingsError(problems)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    index = await CallIndex.create(settings.effective_database_url)
    if settings.worker is None:
        # Under `serve --workers` the supervisor does this once, before any
        # worker starts: a worker doing it would mark its siblings' live calls.
        await _repair_interrupted_calls(index, settings)
    factories = model_factories(settings, clock=clock, wall_clock=wall_clock)
    admission = Admission(
        ServerPool(settings.personaplex_urls, clock=clock),
        available_providers=factories.keys(),
        max_calls=settings.max_calls,
    )
    shutdown: list[Callable[[], Coroutine[Any, Any, None]]] = [index.close]
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
    metrics = BridgeMetrics()
    metrics.watch_leases(lambda: admission.pool.in_use, admission.pool.free_count)
    journals = JournalFactory(data_dir=settings.data_dir, index=index, transcriber=transcriber)
    bridge = Bridge(
        config=BridgeConfig(
            stream_url=settings.stream_url,
            action_url=settings.action_url,
            pending_timeout=settings.pending_timeout,
        ),
        personas=lambda: personas.current,
        admission=admission,
        factories=factories,
        journals=journals,
        clock=clock,
        metrics=metrics,
        guard=TollFraudGuard(
            GuardLimits(
                caller_calls_per_window=settings.caller_max_calls_per_hour,
                caller_window_seconds=3600.0,
                caller_max_concurrent=settings.caller_max_concurrent,
                global_calls_per_minute=settings.max_new_calls_per_minute,
            )
        ),
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

    background: list[Callable[[], Coroutine[Any, Any, None]]] = [watch_personas, watch_loop_lag]
    outbound_store = await OutboundStore.create(settings.effective_database_url)
    shutdown.append(outbound_store.close)

    def wall() -> datetime:
        return datetime.fromtimestamp(wall_clock(), UTC)

    outbound = _outbound(
        settings,
        bridge=bridge,
        personas=personas,
        store=outbound_store,
        journals=journals,
        wall=wall,
    )
    campaigns = CampaignRunner(outbound, wall_clock=wall)
    background.append(campaigns.run_forever)
    days = settings.retention_days
    if days is not None and settings.worker in (None, 0):  # one process expires files

        async def expire_old_files() -> None:
            while True:
                try:
                    report = await apply_retention(
                        index, settings.data_dir, days, datetime.now(UTC)
                    )
                    if report.expired_calls:
                        log.info(
                            "retention: expired files of %d call(s)", len(report.expired_calls)
                        )
                except StorageError as exc:
                    log.error("retention pass failed: %s", exc)
                await asyncio.sleep(RETENTION_INTERVAL_SECONDS)

        background.append(expire_old_files)
    return create_app(
        AppDeps(
            bridge=bridge,
            twilio_auth=auth,
            background=background,
            on_shutdown=shutdown,
            drain_seconds=drain_seconds,
            outbound=(outbound, campaigns),
            history=HistoryDeps(
                index=index,
                data_dir=settings.data_dir,
                dashboard_token=(
                    settings.dashboard_token.get_secret_value()
                    if settings.dashboard_token is not None
                    else None
                ),
            ),
        )
    )


def _outbound(
    settings: Settings,
    *,
    bridge: Bridge,
    personas: PersonaStore,
    store: OutboundStore,
    journals: JournalFactory,
    wall: Callable[[], datetime],
) -> Outbound:
    """The outbound side (docs/outbound.md); it dials only when enabled in settings."""
    sid, token = settings.twilio_account_sid, settings.twilio_auth_token
    dialer = (
        TwilioDialer(sid, token.get_secret_value(), api_base_url=settings.twilio_api_base_url)
        if sid is not None and token is not None
        else None
    )
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
            replica=f"w{settings.worker}" if settings.worker is not None else "main",
            dnc_file=settings.outbound_dnc_file,
        ),
        bridge=bridge,
        personas=lambda: personas.current,
        store=store,
        dialer=dialer,
        journals=journals,
        wall_clock=wall,
    )


__all__ = ["SettingsError", "build_app", "model_factories"]
