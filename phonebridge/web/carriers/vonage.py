"""Vonage Voice API routes (CARRIERS.md §3).

- ``GET /vonage/answer``: the answer_url request with Vonage's signed JWT
  (HS256 with the signature secret, fresh ``iat``, our ``api_key``, a ``jti``
  accepted once). The answer is an NCCO ``connect`` to a ``websocket``
  endpoint (L16 at the leg's rate, ``authorization: {"type": "vonage"}``,
  the one-time token in its headers) with ``eventType: synchronous``, or a
  ``talk`` when the call is not taken. Numbers arrive without ``+``.
- ``WS <sticky>/vonage/media``: the upgrade's ``Authorization: Bearer <JWT>``
  is verified like a webhook's; the token comes back in
  ``websocket:connected``.
- ``POST /vonage/event`` (and ``<sticky>/vonage/event``, the NCCO's
  ``eventUrl``, for any replica): when the socket fails or the bridge closes
  it, Vonage posts ``failed``/``disconnected`` and runs the NCCO we answer —
  the fallback, a goodbye, or nothing (an empty NCCO ends the call). Closing
  the socket is how the bridge ends a Vonage call: no REST is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse, Response

from phonebridge.calls.bridge import AfterStream, PhoneCall, Say, Transfer
from phonebridge.calls.pending import PendingCall
from phonebridge.config import REPLICA_PREFIX
from phonebridge.errors import RemoteProtocolError
from phonebridge.telephony.carrier_leg import LegSpec
from phonebridge.telephony.seen import SeenValues
from phonebridge.telephony.vonage import ncco
from phonebridge.telephony.vonage.protocol import VonageStream, e164
from phonebridge.telephony.vonage.signature import verify
from phonebridge.web.carriers.common import CarrierEdge, refuse_before_accept, serve_stream

log = logging.getLogger(__name__)

CARRIER = "vonage"
STREAM_GONE = frozenset({"disconnected", "failed", "unanswered"})


def render(answer: AfterStream) -> list[dict[str, Any]]:
    match answer:
        case Say(message=message):
            return ncco.talk(message)
        case Transfer(number=number, message=message):
            return ncco.transfer(number, message)
    return []  # an NCCO that runs out hangs up


def connect_document(edge: CarrierEdge) -> Callable[[ncco.AnswerRequest, PendingCall], ncco.Ncco]:
    """The NCCO ``connect`` to our media socket for a reserved call, inbound or
    outbound; its ``eventUrl`` is the ``disconnected`` fallback route below."""
    media_path = edge.sticky(CARRIER, "media")

    def render(call: ncco.AnswerRequest, pending: PendingCall) -> ncco.Ncco:
        return ncco.connect_websocket(
            edge.websocket_url(media_path),
            call=call,
            sample_rate=edge.rate,
            headers={"token": pending.token},
            event_url=edge.webhook_url(edge.sticky(CARRIER, "event")),
        )

    return render


def vonage_router(edge: CarrierEdge, *, signature_secret: str, api_key: str | None) -> APIRouter:
    router = APIRouter()
    spec = LegSpec(CARRIER, lambda note: VonageStream(note=note), has_stop=False)
    seen = SeenValues()
    media_path = edge.sticky(CARRIER, "media")
    connect = connect_document(edge)

    def signed(authorization: str | None, body: bytes | None) -> bool:
        claims = verify(
            authorization,
            signature_secret,
            edge.wall_clock(),
            body=body,
            api_key=api_key,
            seen=seen,
        )
        return claims is not None

    @router.get("/vonage/answer")
    async def answer(request: Request) -> Response:
        if not signed(request.headers.get("authorization"), None):
            log.warning("Vonage answer request with a bad or missing JWT")
            return Response("invalid signature", status_code=403)
        try:
            call = ncco.parse_answer(dict(request.query_params))
        except RemoteProtocolError as exc:
            return Response(str(exc), status_code=400)
        result = await edge.bridge.answer_phone(
            PhoneCall(
                channel=CARRIER,
                call_sid=edge.call_sid(CARRIER, call.uuid),
                from_number=call.from_number,
                to_number=call.to_number,
                account_sid=call.conversation_uuid,
                sample_rate=edge.rate,
            )
        )
        if not isinstance(result, PendingCall):
            return JSONResponse(render(result))
        return JSONResponse(connect(call, result))

    async def event(request: Request) -> Response:
        body = await request.body()
        if not signed(request.headers.get("authorization"), body):
            log.warning("Vonage event with a bad or missing JWT")
            return Response("invalid signature", status_code=403)
        try:
            happened = ncco.parse_event(body)
        except RemoteProtocolError as exc:
            return Response(str(exc), status_code=400)
        if happened.status not in STREAM_GONE or not happened.uuid:
            return Response(status_code=204)
        to_number = happened.headers.get("to")
        decision = await edge.bridge.after_stream(
            edge.call_sid(CARRIER, happened.uuid),
            e164(to_number) if isinstance(to_number, str) else "",
            carrier=CARRIER,
        )
        return JSONResponse(render(decision))

    router.add_api_route("/vonage/event", event, methods=["POST"])
    router.add_api_route(edge.sticky(CARRIER, "event"), event, methods=["POST"])
    if edge.sticky_prefix.startswith(REPLICA_PREFIX):
        # A dead replica's disconnected event is answered by any replica.
        router.add_api_route(
            f"{REPLICA_PREFIX}/{{replica}}/{CARRIER}/event", event, methods=["POST"]
        )

    @router.websocket(media_path)
    async def media(websocket: WebSocket) -> None:
        if not signed(websocket.headers.get("authorization"), None):
            await refuse_before_accept(websocket, CARRIER, "bad or missing JWT")
            return
        await serve_stream(edge, websocket, spec)

    return router
