"""SignalWire cXML routes (CARRIERS.md §4): Twilio's shape, SignalWire's keys.

- ``POST /signalwire/voice``: the cXML webhook, signed with the project's
  Signing Key by Twilio's algorithm (``X-SignalWire-Signature``, or its
  ``X-Twilio-Signature`` alias). The answer is ``<Connect action><Stream>``
  (``L16@16000h`` or ``PCMU@8000h``; no query string in the URL: the token
  is both ``authBearerToken`` and a ``<Parameter>``).
- ``WS <sticky>/signalwire/media``: ``Authorization: Bearer <token>`` of a
  pending SignalWire call.
- ``POST <sticky>/signalwire/stream-ended``: the ``<Connect action>``; the
  same answer as Twilio's (cXML speaks TwiML's verbs), served for any
  replica id so a dead replica's call still gets its fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import Response

from phonebridge.calls.bridge import PhoneCall
from phonebridge.calls.pending import PendingCall
from phonebridge.calls.personal import carrier_fields
from phonebridge.config import REPLICA_PREFIX, TWILIO_PREFIX
from phonebridge.telephony.carrier_leg import LegSpec
from phonebridge.telephony.signalwire import cxml
from phonebridge.telephony.signalwire.protocol import SignalWireStream
from phonebridge.telephony.signalwire.signature import ALIAS_HEADER, SIGNATURE_HEADER, validate_form
from phonebridge.telephony.twilio.entry import render_twiml
from phonebridge.telephony.vonage.protocol import e164
from phonebridge.web.carriers.common import CarrierEdge, refuse_before_accept, serve_stream

log = logging.getLogger(__name__)

CARRIER = "signalwire"
XML = "application/xml"


def bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def connect_document(edge: CarrierEdge) -> Callable[[PendingCall], str]:
    """The cXML ``<Connect action><Stream>`` for a reserved call, inbound or outbound."""
    media_path = edge.sticky(CARRIER, "media")

    def render(pending: PendingCall) -> str:
        return cxml.connect_stream(
            edge.websocket_url(media_path),
            action_url=edge.webhook_url(edge.sticky(CARRIER, "stream-ended")),
            sample_rate=edge.rate,
            bearer_token=pending.token,
            parameters={"token": pending.token},
        )

    return render


def signalwire_router(edge: CarrierEdge, *, signing_key: str) -> APIRouter:
    router = APIRouter()
    spec = LegSpec(CARRIER, lambda note: SignalWireStream(note=note), has_stop=True)
    media_path = edge.sticky(CARRIER, "media")
    connect = connect_document(edge)

    async def signed_form(request: Request) -> dict[str, str] | None:
        form = {key: str(value) for key, value in (await request.form()).items()}
        url = edge.signed_url(request.url.path, request.url.query)
        signature = request.headers.get(SIGNATURE_HEADER) or request.headers.get(ALIAS_HEADER)
        if validate_form(signing_key, url, form, signature):
            return form
        log.warning("SignalWire request with a bad or missing signature for %s", url)
        return None

    @router.post("/signalwire/voice")
    async def voice(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response("invalid signature", status_code=403)
        if not form.get("CallSid") or not form.get("To"):
            return Response("webhook without CallSid or To", status_code=400)
        answer = await edge.bridge.answer_phone(
            PhoneCall(
                channel=CARRIER,
                call_sid=edge.call_sid(CARRIER, form["CallSid"]),
                from_number=e164(form.get("From", "")),
                to_number=e164(form["To"]),
                account_sid=form.get("AccountSid", ""),
                sample_rate=edge.rate,
                fields=carrier_fields(form),
            )
        )
        if not isinstance(answer, PendingCall):
            return Response(render_twiml(answer), media_type=XML)
        return Response(connect(answer), media_type=XML)

    async def stream_ended(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response("invalid signature", status_code=403)
        answer = await edge.bridge.after_stream(
            edge.call_sid(CARRIER, form.get("CallSid", "")),
            e164(form.get("To", "")),
            e164(form.get("From", "")),
            carrier=CARRIER,
        )
        return Response(render_twiml(answer), media_type=XML)

    router.add_api_route(f"{TWILIO_PREFIX}/{CARRIER}/stream-ended", stream_ended, methods=["POST"])
    router.add_api_route(
        f"{REPLICA_PREFIX}/{{replica}}/{CARRIER}/stream-ended", stream_ended, methods=["POST"]
    )

    @router.websocket(media_path)
    async def media(websocket: WebSocket) -> None:
        token = bearer(websocket.headers.get("authorization"))
        if edge.pending_of(CARRIER, token) is None:
            await refuse_before_accept(websocket, CARRIER, "no valid bearer token")
            return
        await serve_stream(edge, websocket, spec, upgrade_token=token)

    return router
