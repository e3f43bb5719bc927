"""Exotel Voicebot routes (CARRIERS.md §5).

- ``GET /exotel/voice``: the Voicebot applet's URL endpoint. Exotel signs
  nothing: the request must pass the configured checks (Basic auth from the
  URL's userinfo, and/or an IP allow-list). The answer is ``{"url": "wss://
  user:password@…/<sticky>/exotel/media?sample-rate=16000&token=…"}``; a call
  that is not taken gets ``503`` and the flow goes on to its next applet
  (where the account's own message plays: Exotel has no answer document).
- ``WS <sticky>/exotel/media``: the same checks on the upgrade, and the
  ``token`` query parameter must name a pending Exotel call.
- After the stream: closing the socket ends the applet and the call flow
  continues (a Passthru applet sees the stream's end): that *is* Exotel's
  fallback; no in-call REST exists (§5.5).
"""

from __future__ import annotations

import logging
from functools import partial

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import Response

from phonebridge.calls.bridge import PhoneCall
from phonebridge.calls.pending import PendingCall
from phonebridge.errors import RemoteProtocolError
from phonebridge.telephony.carrier_leg import LegSpec
from phonebridge.telephony.exotel import applet
from phonebridge.telephony.exotel.auth import Network, authorized
from phonebridge.telephony.exotel.protocol import ExotelStream
from phonebridge.telephony.vonage.protocol import e164
from phonebridge.web.carriers.common import CarrierEdge, refuse_before_accept, serve_stream

log = logging.getLogger(__name__)

CARRIER = "exotel"


def _number(text: str) -> str:
    """E.164 when Exotel sends international digits; a national ``0…`` number is kept as is
    (a persona lists it the way Exotel writes it: *unverified* which form a live call uses)."""
    return text if text.strip().startswith("0") else e164(text)


def exotel_router(
    edge: CarrierEdge, *, user: str, password: str, networks: tuple[Network, ...]
) -> APIRouter:
    router = APIRouter()
    spec = LegSpec(CARRIER, lambda note: ExotelStream(note=note), has_stop=True)
    media_path = edge.sticky(CARRIER, "media")

    allowed = partial(authorized, user=user, password=password, networks=networks)

    @router.get("/exotel/voice")
    async def voice(request: Request) -> Response:
        address = request.client.host if request.client else None
        if not allowed(authorization=request.headers.get("authorization"), address=address):
            log.warning("Exotel applet request refused (credentials or address)")
            return Response("unauthorized", status_code=401)
        try:
            call = applet.parse_request(dict(request.query_params))
        except RemoteProtocolError as exc:
            return Response(str(exc), status_code=400)
        answer = await edge.bridge.answer_phone(
            PhoneCall(
                channel=CARRIER,
                call_sid=edge.call_sid(CARRIER, call.call_sid),
                from_number=_number(call.from_number),
                to_number=_number(call.to_number),
                sample_rate=edge.rate,
            )
        )
        if not isinstance(answer, PendingCall):
            return Response("not taken: the flow continues", status_code=503)
        url = applet.stream_url(
            edge.websocket_url(media_path),
            sample_rate=edge.rate,
            parameters={"token": answer.token},
            basic_user=user,
            basic_password=password,
        )
        return Response(applet.answer(url), media_type="application/json")

    @router.websocket(media_path)
    async def media(websocket: WebSocket) -> None:
        address = websocket.client.host if websocket.client else None
        token = websocket.query_params.get("token")
        if not allowed(authorization=websocket.headers.get("authorization"), address=address):
            await refuse_before_accept(websocket, CARRIER, "credentials or address")
            return
        if edge.pending_of(CARRIER, token) is None:
            await refuse_before_accept(websocket, CARRIER, "unknown token")
            return
        await serve_stream(edge, websocket, spec, upgrade_token=token)

    return router
