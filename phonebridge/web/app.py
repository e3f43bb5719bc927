"""The FastAPI application factory: everything is passed in (ARCHITECTURE.md §5).

:func:`create_app` wires routes to already-built services and owns their
background tasks (pending-call sweeper, persona watcher) through the app's
lifespan. Building the services from settings is :mod:`phonebridge.service`'s
job, so tests can hand in fakes or real parts as they need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from phonebridge.calls.bridge import Bridge
from phonebridge.coordination.build import Coordination
from phonebridge.outbound.campaigns import CampaignRunner
from phonebridge.outbound.service import Outbound
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import OutboxEntry
from phonebridge.storage.objects import ObjectStore
from phonebridge.telephony.twilio.entry import TwilioEntry
from phonebridge.web.api import api_router, live_calls
from phonebridge.web.auth import dashboard_auth
from phonebridge.web.dashboard import dashboard_router
from phonebridge.web.limits import MAX_REQUEST_BODY_BYTES, BodySizeLimit
from phonebridge.web.outbound_routes import outbound_api_router, outbound_twilio_router
from phonebridge.web.softphone.routes import softphone_router
from phonebridge.web.stats_api import stats_router
from phonebridge.web.twilio_routes import TwilioAuth, twilio_router

log = logging.getLogger(__name__)

Deliveries = Callable[[str], Awaitable[list[OutboxEntry]]]


@dataclass(frozen=True, slots=True)
class HistoryDeps:
    """What the call-history API and the dashboard read (issue 5)."""

    index: CallIndex
    data_dir: Path
    dashboard_token: str | None = None
    """None: only loopback clients may read the history (see web/auth.py)."""
    deliveries: Deliveries | None = None
    """A call's post-call webhook deliveries, shown on its page (issue 15)."""
    browser_calls_per_user: int = 1
    """Talk-page calls one dashboard user may have at once (web/softphone)."""
    store: ObjectStore | None = None
    """Where recordings and transcripts of other replicas' calls are read (None: local only)."""


@dataclass(slots=True)
class AppDeps:
    """What the web app serves."""

    bridge: Bridge
    twilio: TwilioEntry
    """Twilio's requests (the bridge's, through Twilio's entry)."""
    twilio_auth: TwilioAuth
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=tuple)
    """Long-running coroutines started with the app and cancelled at shutdown."""
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=tuple)
    """Run in order after the calls are drained (close the call index, ...)."""
    drain_seconds: float = 30.0
    """How long calls in progress may go on after shutdown begins."""
    history: HistoryDeps | None = None
    """The call history API and dashboard; None serves neither."""
    outbound: tuple[Outbound, CampaignRunner] | None = None
    """Outbound calls and campaigns (their API needs ``history``'s auth)."""
    public_routers: Sequence[APIRouter] = field(default_factory=tuple)
    """Routes that check their own credentials (signed recording links)."""
    coordination: Coordination | None = None
    """Shared state (leases, guard...): its health shows in ``/readyz``."""
    carrier_routers: Sequence[APIRouter] = field(default_factory=tuple)
    """The further carriers' routes (web/carriers/), outside the dashboard's auth."""
    status_lines: Sequence[Callable[[], str | None]] = field(default_factory=tuple)
    """Further lines for ``/readyz`` (the call index); None: nothing to say. They
    inform, they never fail readiness: calls go on while they say DOWN."""
    withdrawn: bool = False
    """Set at the start of a graceful stop: /readyz fails while calls are still
    taken, so a proxy polling it stops sending webhooks before the drain refuses
    them (serve.py, ``--withdraw-seconds``)."""


def create_app(deps: AppDeps) -> FastAPI:
    """The phonebridge web application."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        jobs = (deps.bridge.sweep_pending_forever, *deps.background)
        tasks = [asyncio.create_task(job()) for job in jobs]
        try:
            yield
        finally:
            await deps.bridge.drain(deps.drain_seconds)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for hook in deps.on_shutdown:
                try:
                    await hook()
                except Exception:
                    log.exception("shutdown hook failed")

    # No /docs or /redoc: Swagger UI and ReDoc load their scripts from a CDN
    # (the dashboard loads nothing from outside) and would be two more pages to
    # guard. FastAPI's own /openapi.json is off too: it is served below, behind
    # the dashboard auth, because it maps the call-history API.
    app = FastAPI(
        title="phonebridge", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    # Public webhooks must not read a 10 MB form before refusing it (web/limits.py).
    app.add_middleware(BodySizeLimit, max_bytes=MAX_REQUEST_BODY_BYTES)
    app.include_router(twilio_router(deps.twilio, deps.twilio_auth))
    for router in [*deps.carrier_routers, *deps.public_routers]:
        app.include_router(router)
    if deps.outbound is not None:
        app.include_router(
            outbound_twilio_router(deps.outbound[0], deps.twilio_auth, deps.twilio.connect_twiml)
        )
    if deps.history is not None:
        # the Twilio routes above stay outside the dashboard auth on purpose
        require = dashboard_auth(deps.history.dashboard_token)
        live = live_calls(deps.bridge.live)
        history = deps.history
        app.include_router(
            api_router(history.index, history.data_dir, live, require, store=history.store)
        )
        app.include_router(stats_router(history.index, require))
        app.include_router(
            dashboard_router(history.index, live, require, deliveries=history.deliveries)
        )
        if deps.outbound is not None:
            app.include_router(outbound_api_router(*deps.outbound, require))
        app.include_router(
            softphone_router(
                deps.bridge,
                require,
                calls_per_user=history.browser_calls_per_user,
                clock=deps.bridge.clock,
            )
        )

        @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require)])
        async def openapi() -> JSONResponse:
            return JSONResponse(app.openapi())

    @app.get("/healthz", response_class=PlainTextResponse)
    async def healthz() -> str:
        return "ok"

    @app.get("/readyz", response_class=PlainTextResponse)
    async def readyz() -> PlainTextResponse:
        # Second line: the coordination store, so "ready but Redis is down"
        # (hosted overflow only) is visible to whoever looks.
        store = "" if deps.coordination is None else "\n" + deps.coordination.status()
        for line in deps.status_lines:
            text = line()
            if text:
                store += "\n" + text
        reason = deps.bridge.admission.readiness()
        if deps.withdrawn:
            reason = "withdrawn: shutting down"
        if reason is None:
            return PlainTextResponse("ready" + store)
        return PlainTextResponse(f"not ready: {reason}{store}", status_code=503)

    # /metrics is deliberately open, like /healthz: Prometheus scrapes pods on
    # the private network without credentials (deploy/k8s: pod annotations), and
    # the public edges never route it (deploy/Caddyfile answers 404, the Ingress
    # exposes /twilio only). Its labels hold no secrets or phone numbers
    # (tests/security/test_secrets.py checks the body).
    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(deps.bridge.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.state.deps = deps
    return app
