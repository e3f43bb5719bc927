"""The composition root: settings in, a ready-to-serve application out.

Everything with a life (the call index, the persona watcher, the bridge) is
built here from :class:`~phonebridge.config.Settings` and handed to
:func:`phonebridge.web.app.create_app`; nothing else reads settings globally.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI

from phonebridge.calls.admission import Admission, ServerPool
from phonebridge.calls.bridge import Bridge, BridgeConfig
from phonebridge.calls.context import ContextClient
from phonebridge.calls.guard import GuardLimits, TollFraudGuard
from phonebridge.calls.journal import JournalFactory, Transcriber
from phonebridge.calls.personal import PersonalCalls
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
from phonebridge.personas.reload import PersonaStore
from phonebridge.storage.index import CallIndex
from phonebridge.storage.retention import apply_retention
from phonebridge.web.app import AppDeps, HistoryDeps, create_app
from phonebridge.web.recording_links import recording_link_router
from phonebridge.web.twilio_routes import TwilioAuth
from phonebridge.webhooks.delivery import CallSummaries
from phonebridge.webhooks.outbox import Outbox

log = logging.getLogger(__name__)

DEFAULT_TRANSCRIBE_MODEL = "whisper-1"
RETENTION_INTERVAL_SECONDS = 3600.0

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class ProviderOverrides:
    """Where hosted providers live; only the simulators (tests, demo) change these."""

    polargrid_base_url: str | None = None
    fal_base_url: str | None = None


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
    settings: Settings, *, clock: Clock, overrides: ProviderOverrides = ProviderOverrides()
) -> dict[str, ModelSessionFactory]:
    """One factory per configured provider."""
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
                base_url=overrides.polargrid_base_url,
            ),
            clock=clock,
            logger=model_log,
        )
    if settings.fal_key is not None:
        fal = FalSettings(api_key=settings.fal_key.get_secret_value())
        if overrides.fal_base_url is not None:
            fal = dataclasses.replace(fal, base_url=overrides.fal_base_url)
        factories["fal"] = FalFactory(fal, clock=clock, logger=model_log)
    return factories


async def build_app(
    settings: Settings,
    *,
    clock: Clock = time.monotonic,
    overrides: ProviderOverrides = ProviderOverrides(),
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
    factories = model_factories(settings, clock=clock, overrides=overrides)
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
    webhook_http = httpx.AsyncClient()  # context lookups and call summaries
    shutdown.append(webhook_http.aclose)
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    personal = PersonalCalls(
        registry=metrics.registry,
        clock=clock,
        context=ContextClient(webhook_http, secret=secret, wall_time=time.time),
        answer_within_seconds=settings.answer_within_seconds,
    )
    summaries: CallSummaries | None = None
    public_routers = []
    if secret is not None:
        summaries = CallSummaries(
            outbox=await Outbox.create(index),
            index=index,
            client=webhook_http,
            secret=secret,
            public_url=settings.public_url,
            data_dir=settings.data_dir,
            personas=lambda: personas.current,
            default_url=settings.call_ended_webhook_url,
            link_seconds=settings.recording_link_seconds,
            registry=metrics.registry,
        )
        public_routers.append(recording_link_router(index, settings.data_dir, secret))
    bridge = Bridge(
        config=BridgeConfig(
            stream_url=settings.stream_url,
            action_url=settings.action_url,
            pending_timeout=settings.pending_timeout,
        ),
        personas=lambda: personas.current,
        admission=admission,
        factories=factories,
        journals=JournalFactory(
            data_dir=settings.data_dir,
            index=index,
            transcriber=transcriber,
            on_final=summaries.call_final if summaries is not None else None,
        ),
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
        personal=personal,
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
    if summaries is not None and settings.worker in (None, 0):  # one process sends
        background.append(summaries.run_forever)
    return create_app(
        AppDeps(
            bridge=bridge,
            twilio_auth=auth,
            background=background,
            on_shutdown=shutdown,
            drain_seconds=drain_seconds,
            public_routers=public_routers,
            history=HistoryDeps(
                index=index,
                data_dir=settings.data_dir,
                dashboard_token=(
                    settings.dashboard_token.get_secret_value()
                    if settings.dashboard_token is not None
                    else None
                ),
                deliveries=summaries.deliveries if summaries is not None else None,
            ),
        )
    )


__all__ = ["ProviderOverrides", "SettingsError", "build_app", "model_factories"]
