"""HTTP edges of outbound calls: the operator's API and page, Twilio's callbacks.

Operator side (behind the dashboard auth, web/auth.py): ``POST /api/calls``
places one call; ``/api/campaigns`` creates (JSON, or CSV/JSON contacts in the
body), lists, shows progress, pauses, resumes and cancels; ``/api/dnc`` reads
and edits the do-not-call list; ``/outbound`` is the dashboard page ("Call a
number" and campaign progress). Bodies are JSON only: a cross-site HTML form
cannot send ``application/json`` without a CORS preflight, so a browser
holding the operator's Basic credentials cannot be made to place calls.

Every call is attributed: ``operator:<name>`` (the ``X-Phonebridge-Operator``
header, else the Basic user name, else ``operator``) or ``campaign:<id>``.

Twilio side (no dashboard auth; signed like every webhook, PROTOCOLS.md §1.4,
against the configured public URL with the query string):
``{sticky}/outbound/answer``, ``/status`` and ``/amd`` with ``?attempt=<id>``.
They are written under the sticky prefix (``/twilio/r/<replica>`` in a
cluster) so the answer reaches the replica that reserved a dial-time model
session, and served for any replica id (a dead replica's callbacks).

SignalWire side (when it can dial out): the same three under
``{sticky}/outbound/signalwire/``, signed with the project's Signing Key by
Twilio's algorithm (``X-SignalWire-Signature`` or its ``X-Twilio-Signature``
alias) against the configured public URL; the answer is cXML.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field

from phonebridge.calls.pending import PendingCall
from phonebridge.config import REPLICA_PREFIX, TWILIO_PREFIX
from phonebridge.errors import StorageError
from phonebridge.outbound.campaigns import (
    CampaignRunner,
    CampaignSettings,
    UploadError,
    parse_contacts,
)
from phonebridge.outbound.service import CallRequest, Outbound, OutboundError
from phonebridge.outbound.store import is_attempt_id
from phonebridge.telephony.signalwire import signature as signalwire_signature
from phonebridge.telephony.twilio import twiml
from phonebridge.telephony.twilio.dialer import call_status, machine_verdict
from phonebridge.telephony.twilio.signature import (
    SIGNATURE_HEADER,
    public_request_url,
    validate_webhook,
)
from phonebridge.web.auth import AuthDependency
from phonebridge.web.twilio_routes import TWIML, TwilioAuth

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
_CAMPAIGN_ID = re.compile(r"^cp_[0-9a-f]{24}$")
_OPERATOR = re.compile(r"^[A-Za-z0-9._@+-]{1,64}$")


class CallIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str
    persona: str
    from_: str | None = Field(default=None, alias="from")
    variables: dict[str, str] = Field(default_factory=dict)


class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    persona: str
    from_: str | None = Field(default=None, alias="from")
    concurrency: int = 1
    daily_cap: int | None = None
    max_attempts: int = 3
    retry_seconds: float = 3600.0
    window_start: str = "08:00"
    window_end: str = "21:00"
    contacts: list[dict[str, Any]] | None = None
    """JSON contacts; or ``contacts_csv`` with the CSV text."""
    contacts_csv: str | None = None


def operator_of(request: Request) -> str:
    """Who is placing the call, for attribution (never for authorisation)."""
    named = request.headers.get("x-phonebridge-operator", "").strip()
    if not named:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                named = base64.b64decode(credentials, validate=True).decode().partition(":")[0]
            except (binascii.Error, ValueError):
                named = ""
    return f"operator:{named}" if _OPERATOR.fullmatch(named) else "operator"


def _refused(exc: OutboundError | UploadError) -> JSONResponse:
    status = exc.status if isinstance(exc, OutboundError) else 400
    return JSONResponse({"error": str(exc)}, status_code=status)


def outbound_api_router(
    outbound: Outbound, runner: CampaignRunner, auth_dependency: AuthDependency
) -> APIRouter:
    router = APIRouter(dependencies=[Depends(auth_dependency)])
    templates = Jinja2Templates(directory=str(_HERE / "templates"))
    store = outbound.store

    @router.post("/api/calls", status_code=201)
    async def place_call(body: CallIn, request: Request) -> JSONResponse:
        try:
            attempt = await outbound.place(
                CallRequest(
                    to=body.to,
                    persona=body.persona,
                    from_=body.from_,
                    variables=body.variables,
                    placed_by=operator_of(request),
                )
            )
        except OutboundError as exc:
            return _refused(exc)
        return JSONResponse(attempt.to_json(), status_code=201)

    @router.get("/api/outbound/attempts")
    async def list_attempts(campaign: str | None = None) -> dict[str, Any]:
        found = await store.attempts_for(campaign_id=campaign)
        return {"items": [a.to_json() for a in found]}

    @router.post("/api/campaigns", status_code=201)
    async def create_campaign(body: CampaignIn, request: Request) -> JSONResponse:
        settings = CampaignSettings(
            name=body.name,
            persona=body.persona,
            from_=body.from_,
            concurrency=body.concurrency,
            daily_cap=body.daily_cap,
            max_attempts=body.max_attempts,
            retry_seconds=body.retry_seconds,
            window_start=body.window_start,
            window_end=body.window_end,
        )
        try:
            if not outbound.config.enabled:
                raise OutboundError("outbound calls are disabled", 403)
            if (body.contacts is None) == (body.contacts_csv is None):
                raise UploadError("send exactly one of 'contacts' (JSON) or 'contacts_csv'")
            if body.contacts_csv is not None:
                contacts = parse_contacts(body.contacts_csv, "csv", outbound)
            else:
                contacts = parse_contacts(json.dumps(body.contacts), "json", outbound)
            campaign = await runner.create(settings, contacts, operator_of(request))
        except (OutboundError, UploadError) as exc:
            return _refused(exc)
        data = campaign.to_json()
        data["progress"] = await store.progress(campaign.id)
        return JSONResponse(data, status_code=201)

    @router.get("/api/campaigns")
    async def list_campaigns() -> dict[str, Any]:
        items = []
        for campaign in await store.campaigns_list():
            data = campaign.to_json()
            data["progress"] = await store.progress(campaign.id)
            items.append(data)
        return {"items": items}

    async def load(campaign_id: str) -> Any:
        if not _CAMPAIGN_ID.fullmatch(campaign_id):
            raise HTTPException(status_code=404, detail="no such campaign")
        campaign = await store.campaign(campaign_id)
        if campaign is None:
            raise HTTPException(status_code=404, detail="no such campaign")
        return campaign

    @router.get("/api/campaigns/{campaign_id}")
    async def show_campaign(campaign_id: str) -> dict[str, Any]:
        campaign = await load(campaign_id)
        data: dict[str, Any] = campaign.to_json()
        data["progress"] = await store.progress(campaign_id)
        return data

    transitions = {
        "pause": ("paused", ("running",)),
        "resume": ("running", ("paused",)),
        "cancel": ("cancelled", ("running", "paused")),
    }

    @router.post("/api/campaigns/{campaign_id}/{action}")
    async def control(campaign_id: str, action: str) -> JSONResponse:
        if action not in transitions:
            raise HTTPException(status_code=404, detail="unknown action")
        campaign = await load(campaign_id)
        target, allowed = transitions[action]
        if not await store.set_campaign_state(campaign_id, target, runner.now(), only_from=allowed):
            return JSONResponse(
                {"error": f"cannot {action} a {campaign.state} campaign"}, status_code=409
            )
        return JSONResponse({"id": campaign_id, "state": target})

    @router.get("/api/dnc")
    async def dnc_list() -> dict[str, Any]:
        return {"items": await store.dnc_list()}

    @router.post("/api/dnc", status_code=201)
    async def dnc_add(body: dict[str, str], request: Request) -> JSONResponse:
        try:
            number = outbound.check_number(body.get("number", ""))
        except OutboundError as exc:
            return _refused(exc)
        added = await store.add_dnc(number, "api", runner.now(), note=operator_of(request))
        return JSONResponse({"number": number, "added": added}, status_code=201)

    @router.delete("/api/dnc/{number}")
    async def dnc_remove(number: str) -> dict[str, Any]:
        return {"number": number, "removed": await store.remove_dnc(number)}

    @router.get("/outbound", response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request) -> HTMLResponse:
        personas = [p.id for p in outbound.personas().personas]
        return templates.TemplateResponse(
            request,
            "outbound.html",
            {
                "enabled": outbound.config.enabled,
                "personas": personas,
                "caller_ids": outbound.config.caller_ids,
            },
        )

    @router.get("/outbound/outbound.js", include_in_schema=False)
    async def script() -> FileResponse:
        return FileResponse(
            _HERE / "static" / "outbound.js", media_type="text/javascript; charset=utf-8"
        )

    return router


def outbound_twilio_router(
    outbound: Outbound, auth: TwilioAuth, render: Callable[[PendingCall], str]
) -> APIRouter:
    """Twilio's answer, status and AMD callbacks for calls we placed (signed).

    Written under this process's sticky prefix (the edge proxy brings them back
    to the replica holding the call) but served for every replica id and at the
    single-process path, like ``stream-ended``: when the replica named is gone,
    the proxy sends them to a survivor, which settles the attempt from the call
    index (its state is there, not in the dead replica's memory). ``render``
    writes the answered call's ``<Connect><Stream>``.
    """

    def verify(request: Request, form: dict[str, str]) -> bool:
        if not auth.verify_webhooks:
            return True
        url = public_request_url(auth.public_url, request.url.path, request.url.query)
        if validate_webhook(auth.auth_token, url, form, request.headers.get(SIGNATURE_HEADER)):
            return True
        log.warning("outbound callback with a bad or missing signature for %s", url)
        return False

    return _callback_router(outbound, "twilio", verify, render, TWIML)


def outbound_signalwire_router(
    outbound: Outbound, public_url: str, signing_key: str, render: Callable[[PendingCall], str]
) -> APIRouter:
    """SignalWire's answer, status and AMD callbacks (Signing Key), as for Twilio's;
    ``render`` writes the cXML ``<Connect><Stream>`` (cXML speaks TwiML's ``<Hangup/>``)."""

    def verify(request: Request, form: dict[str, str]) -> bool:
        url = public_request_url(public_url, request.url.path, request.url.query)
        signature = request.headers.get(signalwire_signature.SIGNATURE_HEADER) or (
            request.headers.get(signalwire_signature.ALIAS_HEADER)
        )
        if signalwire_signature.validate_form(signing_key, url, form, signature):
            return True
        log.warning("SignalWire outbound callback with a bad or missing signature for %s", url)
        return False

    return _callback_router(outbound, "signalwire", verify, render, "application/xml")


def _callback_router(
    outbound: Outbound,
    carrier: str,
    verify: Callable[[Request, dict[str, str]], bool],
    render: Callable[[PendingCall], str],
    media_type: str,
) -> APIRouter:
    """The callbacks of the Calls resource (Twilio's, and SignalWire's copy of it),
    their form fields translated into the outbound service's words."""
    router = APIRouter()
    tail = "/outbound/" if carrier == "twilio" else f"/outbound/{carrier}/"

    async def signed(request: Request) -> tuple[str, dict[str, str]] | None:
        form = {key: str(value) for key, value in (await request.form()).items()}
        attempt_id = request.query_params.get("attempt", "")
        if not verify(request, form):
            return None
        if not is_attempt_id(attempt_id):
            return None
        return attempt_id, form

    async def answer(request: Request) -> Response:
        found = await signed(request)
        if found is None:
            return Response("invalid signature or attempt", status_code=403)
        attempt_id, form = found
        try:
            pending = await outbound.answered(
                attempt_id, carrier, form.get("CallSid", ""), form.get("AccountSid", "")
            )
        except StorageError as exc:
            log.error("outbound answer failed: %s", exc)
            return Response("unavailable", status_code=503)
        text = render(pending) if pending is not None else twiml.hangup()
        return Response(text, media_type=media_type)

    async def status(request: Request) -> Response:
        found = await signed(request)
        if found is None:
            return Response("invalid signature or attempt", status_code=403)
        attempt_id, form = found
        value = call_status(form.get("CallStatus", ""))
        if value is None:
            return Response("unknown CallStatus", status_code=400)
        await outbound.status(attempt_id, carrier, form.get("CallSid", ""), value)
        return Response(status_code=204)

    async def amd(request: Request) -> Response:
        found = await signed(request)
        if found is None:
            return Response("invalid signature or attempt", status_code=403)
        attempt_id, form = found
        answered_by = form.get("AnsweredBy", "unknown")
        await outbound.machine(
            attempt_id,
            carrier,
            form.get("CallSid", ""),
            machine_verdict(answered_by),
            answered_by,
        )
        return Response(status_code=204)

    for prefix in (TWILIO_PREFIX, REPLICA_PREFIX + "/{replica}"):
        router.add_api_route(prefix + tail + "answer", answer, methods=["POST"])
        router.add_api_route(prefix + tail + "status", status, methods=["POST"])
        router.add_api_route(prefix + tail + "amd", amd, methods=["POST"])
    return router
