"""Exotel's side of the calls we place (telephony/exotel/dialer.py).

Exotel's Connect Voice AI call has no answer document: the callee answering
opens the ``StreamUrl`` we gave, so **the media socket is the answer**:

- ``WS {prefix}/outbound/exotel/media?sample-rate=…&attempt=<id>``: checked
  like the inbound socket (Basic credentials from the URL's userinfo, and/or
  the IP allow-list) *before* it is accepted; then the ``start`` message (its
  ``call_sid``, and the ``attempt`` custom parameter, which must match the
  query's) reserves the call through :meth:`Outbound.answered` (the
  reservation made at dial time, or admitted now) and the stream runs exactly
  like an inbound Exotel stream. A refusal closes the socket, which ends the
  call. The attempt's ``answered_by`` is recorded as ``unknown``: Exotel
  detects no answering machines.
- ``POST {prefix}/outbound/exotel/status?attempt=<id>``: the StatusCallback
  (``answered`` and ``terminal`` events; form, or JSON), checked the same way
  (Exotel signs nothing: the URL carries the Basic credentials). A
  ``CustomField`` other than the attempt is refused.

``{prefix}`` is this replica's sticky prefix when dialled (``/twilio/r/<id>``,
so the socket reaches the replica holding a dial-time model session), and
every replica serves both paths for any replica id and at ``/twilio``: a dead
replica's callbacks are settled from the shared rows, and its answered calls
admitted by a survivor.
"""

from __future__ import annotations

import json
import logging
from functools import partial

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import Response

from phonebridge.config import REPLICA_PREFIX, TWILIO_PREFIX
from phonebridge.errors import StorageError
from phonebridge.outbound.carrier import CarrierError
from phonebridge.outbound.service import Outbound
from phonebridge.outbound.store import is_attempt_id
from phonebridge.telephony.carrier_leg import LegSpec
from phonebridge.telephony.exotel.auth import Network, authorized
from phonebridge.telephony.exotel.dialer import call_status
from phonebridge.telephony.exotel.protocol import ExotelStream
from phonebridge.telephony.stream import StreamStarted
from phonebridge.web.carriers.common import CarrierEdge, refuse_before_accept, serve_stream

log = logging.getLogger(__name__)

CARRIER = "exotel"


def exotel_outbound_router(
    edge: CarrierEdge,
    outbound: Outbound,
    *,
    user: str,
    password: str,
    networks: tuple[Network, ...],
) -> APIRouter:
    router = APIRouter()
    spec = LegSpec(CARRIER, lambda note: ExotelStream(note=note), has_stop=True)

    allowed = partial(authorized, user=user, password=password, networks=networks)

    async def media(websocket: WebSocket) -> None:
        address = websocket.client.host if websocket.client else None
        if not allowed(authorization=websocket.headers.get("authorization"), address=address):
            await refuse_before_accept(websocket, CARRIER, "credentials or address")
            return
        attempt_id = websocket.query_params.get("attempt", "")
        if not is_attempt_id(attempt_id):
            await refuse_before_accept(websocket, CARRIER, "no attempt in the stream URL")
            return

        async def reserve(started: StreamStarted) -> str | None:
            named = started.parameters.get("attempt", attempt_id)
            if named != attempt_id or not started.call_id:
                log.warning("Exotel outbound stream: start does not match its URL")
                return None
            try:
                pending = await outbound.answered(attempt_id, CARRIER, started.call_id)
                if pending is None:
                    return None
                # Exotel gives no verdict: say so on the attempt rather than leave it blank.
                await outbound.machine(attempt_id, CARRIER, started.call_id, "unknown", "unknown")
            except (StorageError, CarrierError) as exc:
                log.error("Exotel outbound answer failed: %s", exc)
                return None
            return pending.token

        await serve_stream(edge, websocket, spec, reserve=reserve)

    async def status(request: Request) -> Response:
        address = request.client.host if request.client else None
        if not allowed(authorization=request.headers.get("authorization"), address=address):
            log.warning("Exotel status callback refused (credentials or address)")
            return Response("unauthorized", status_code=403)
        attempt_id = request.query_params.get("attempt", "")
        if not is_attempt_id(attempt_id):
            return Response("no attempt", status_code=403)
        fields = await _fields(request)
        if fields is None:
            return Response("not a form or a JSON object", status_code=400)
        tag = fields.get("CustomField", "")
        if tag and tag != attempt_id:
            return Response("CustomField is another attempt's", status_code=403)
        value = call_status(fields.get("Status", ""), fields.get("EventType", ""))
        if value is None:
            return Response("unknown Status", status_code=400)
        try:
            await outbound.status(attempt_id, CARRIER, fields.get("CallSid", ""), value)
        except StorageError as exc:
            log.error("Exotel status callback failed: %s", exc)
            return Response("unavailable", status_code=503)  # Exotel retries non-2xx
        return Response(status_code=204)

    for prefix in (TWILIO_PREFIX, REPLICA_PREFIX + "/{replica}"):
        router.add_api_websocket_route(prefix + "/outbound/exotel/media", media)
        router.add_api_route(prefix + "/outbound/exotel/status", status, methods=["POST"])
    return router


async def _fields(request: Request) -> dict[str, str] | None:
    """The callback's fields: Exotel documents a POST (form), its examples show JSON."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            doc = json.loads(await request.body())
        except ValueError:
            return None
        if not isinstance(doc, dict):
            return None
        return {str(k): "" if v is None else str(v) for k, v in doc.items()}
    return {key: str(value) for key, value in (await request.form()).items()}
