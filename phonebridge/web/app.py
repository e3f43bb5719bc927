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
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from phonebridge.calls.bridge import Bridge
from phonebridge.web.twilio_routes import TwilioAuth, twilio_router

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AppDeps:
    """What the web app serves."""

    bridge: Bridge
    twilio_auth: TwilioAuth
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=tuple)
    """Long-running coroutines started with the app and cancelled at shutdown."""
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=tuple)
    """Run in order after the calls are drained (close the call index, ...)."""
    drain_seconds: float = 30.0
    """How long calls in progress may go on after shutdown begins."""


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

    app = FastAPI(title="phonebridge", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.include_router(twilio_router(deps.bridge, deps.twilio_auth))

    @app.get("/healthz", response_class=PlainTextResponse)
    async def healthz() -> str:
        return "ok"

    @app.get("/readyz", response_class=PlainTextResponse)
    async def readyz() -> PlainTextResponse:
        if deps.bridge.admission.can_take_calls():
            return PlainTextResponse("ready")
        return PlainTextResponse("not ready", status_code=503)

    app.state.deps = deps
    return app
