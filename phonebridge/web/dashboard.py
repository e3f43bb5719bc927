"""The operator's dashboard (issue 5, "Dashboard"): server-rendered pages, vanilla JS.

``/`` lists calls (live ones marked; the list refreshes by polling
``/api/calls`` every few seconds) with search by number and persona;
``/calls/{call_sid}`` shows one call: an ``<audio>`` player on the recording,
both channels' waveforms drawn on a canvas from ``waveform.json``, the call's
facts, and the transcript (utterances and call events as sentences) whose
timestamps seek the player. ``/overview`` charts ``/api/stats/overview`` for a
chosen range: SVG drawn by ``overview.js`` (hand-written rather than a charting
library: the page may load nothing from a CDN, and the few bar and line charts
it needs are less code than vendoring one).

Everything is served from this package (templates/ and static/; no CDN), behind
the same auth dependency as the API. Static files are served from a fixed list
of names, never by path, so nothing can be listed or reached beyond it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

from phonebridge.errors import StorageError
from phonebridge.models.redact import redact_url
from phonebridge.storage.index import CallIndex
from phonebridge.storage.layout import is_valid_call_sid
from phonebridge.storage.models import OutboxEntry
from phonebridge.web.api import LiveCallInfo, call_out
from phonebridge.web.auth import AuthDependency

_HERE = Path(__file__).resolve().parent
_STATIC_DIR = _HERE / "static"
_STATIC_FILES: dict[str, str] = {
    "dashboard.css": "text/css; charset=utf-8",
    "calls.js": "text/javascript; charset=utf-8",
    "call.js": "text/javascript; charset=utf-8",
    "talk.js": "text/javascript; charset=utf-8",
    "talk-worklet.js": "text/javascript; charset=utf-8",
    "listen.js": "text/javascript; charset=utf-8",
    "overview.js": "text/javascript; charset=utf-8",
}
POLL_SECONDS = 3.0
"""How often the call list asks for fresh data (live calls come and go)."""


def _format_seconds(value: float | None) -> str:
    if value is None:
        return "—"
    minutes, seconds = divmod(value, 60)
    return f"{int(minutes)}:{seconds:04.1f}"


def _format_unix_time(value: float | None) -> str:
    if value is None:
        return "—"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def dashboard_router(
    index: CallIndex,
    live: Callable[[], Mapping[str, LiveCallInfo]],
    auth_dependency: AuthDependency,
    *,
    deliveries: Callable[[str], Awaitable[list[OutboxEntry]]] | None = None,
) -> APIRouter:
    """The dashboard pages and their static files, every one behind ``auth_dependency``."""
    router = APIRouter(dependencies=[Depends(auth_dependency)], include_in_schema=False)
    templates = Jinja2Templates(directory=str(_HERE / "templates"))
    templates.env.filters["duration"] = _format_seconds
    templates.env.filters["unix_time"] = _format_unix_time
    templates.env.filters["redacted"] = redact_url

    @router.get("/", response_class=HTMLResponse)
    async def call_list(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            "calls.html",
            {
                "number": request.query_params.get("number", ""),
                "persona": request.query_params.get("persona", ""),
                "poll_ms": int(POLL_SECONDS * 1000),
            },
        )

    @router.get("/overview", response_class=HTMLResponse)
    async def overview_page(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, "overview.html", {"nav": "overview"})

    @router.get("/calls/{call_sid}", response_class=HTMLResponse)
    async def call_page(request: Request, call_sid: str) -> HTMLResponse:
        if not is_valid_call_sid(call_sid):
            raise HTTPException(status_code=404, detail="no such call")
        try:
            record = await index.get(call_sid)
        except StorageError as exc:
            raise HTTPException(status_code=503, detail="call index unavailable") from exc
        if record is None:
            raise HTTPException(status_code=404, detail="no such call")
        webhooks: list[OutboxEntry] | None = None
        if deliveries is not None:
            try:
                webhooks = await deliveries(call_sid)
            except StorageError:
                webhooks = None  # the page still shows the call
        return templates.TemplateResponse(
            request,
            "call.html",
            {"call": call_out(record, live().get(call_sid)), "deliveries": webhooks},
        )

    @router.get("/static/{name}")
    async def static(name: str) -> FileResponse:
        media_type = _STATIC_FILES.get(name)
        if media_type is None:
            raise HTTPException(status_code=404, detail="not found")
        return FileResponse(
            _STATIC_DIR / name,
            media_type=media_type,
            headers={"Cache-Control": "private, max-age=300"},
        )

    return router


__all__ = ["POLL_SECONDS", "dashboard_router"]
