"""Vonage's callbacks for the calls the bridge places (docs/outbound.md).

Two routes per call, both carrying ``?attempt=<id>`` (:mod:`phonebridge.telephony.vonage.dialer`
puts them in the create request's ``answer_url`` and ``event_url``):

- ``GET {sticky}/outbound/vonage/answer``: the answer webhook (Vonage adds
  ``uuid``, ``conversation_uuid``, ``to``, ``from`` to our query). The answer
  is the inbound call's NCCO ``connect`` to our media socket
  (:func:`~phonebridge.web.carriers.vonage.connect_document`), whose
  ``eventUrl`` is the inbound ``disconnected`` route: after the stream,
  voicemail, opt-out goodbye and machine hang-up are the NCCO answered there,
  exactly as for an inbound call. An empty NCCO (the call runs out: Vonage
  hangs up) when the call is not taken.
- ``POST {sticky}/outbound/vonage/event``: the call's events (JSON):
  ``human``/``machine`` (advanced machine detection, with ``sub_state``) go to
  :meth:`Outbound.machine`, the call statuses to :meth:`Outbound.status`;
  anything else is acknowledged and ignored.

Both are signed as the inbound webhooks are (:mod:`phonebridge.telephony.vonage.signature`:
HS256 JWT with the signature secret, fresh ``iat``, our ``api_key``, one-time
``jti``, and the body's ``payload_hash`` on a POST); a forged or unsigned
request is refused with 403 before anything is read or changed. They are
served under ``/twilio`` (one process) and for any replica id
(``/twilio/r/<replica>``): a dead replica's callbacks are settled by any
replica from the shared rows.
"""

from __future__ import annotations

import json
import logging
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from phonebridge.config import REPLICA_PREFIX, TWILIO_PREFIX
from phonebridge.errors import RemoteProtocolError, StorageError
from phonebridge.outbound.carrier import CarrierError
from phonebridge.outbound.service import Outbound
from phonebridge.outbound.store import is_attempt_id
from phonebridge.telephony.seen import SeenValues
from phonebridge.telephony.vonage import ncco
from phonebridge.telephony.vonage.dialer import (
    AMD_STATUSES,
    answered_by,
    call_status,
    machine_verdict,
)
from phonebridge.telephony.vonage.signature import verify
from phonebridge.web.carriers.common import CarrierEdge
from phonebridge.web.carriers.vonage import connect_document

log = logging.getLogger(__name__)

CARRIER: Final = "vonage"


def vonage_outbound_router(
    outbound: Outbound, edge: CarrierEdge, *, signature_secret: str, api_key: str | None
) -> APIRouter:
    router = APIRouter()
    seen = SeenValues()
    connect = connect_document(edge)

    def attempt_of(request: Request, body: bytes | None) -> str | None:
        """The attempt id of a request signed by Vonage; None: refuse it (403)."""
        claims = verify(
            request.headers.get("authorization"),
            signature_secret,
            edge.wall_clock(),
            body=body,
            api_key=api_key,
            seen=seen,
        )
        if claims is None:
            log.warning("Vonage outbound callback with a bad or missing JWT")
            return None
        attempt_id = request.query_params.get("attempt", "")
        return attempt_id if is_attempt_id(attempt_id) else None

    async def answer(request: Request) -> Response:
        attempt_id = attempt_of(request, None)
        if attempt_id is None:
            return Response("invalid signature or attempt", status_code=403)
        try:
            call = ncco.parse_answer(dict(request.query_params))
        except RemoteProtocolError as exc:
            return Response(str(exc), status_code=400)
        try:
            pending = await outbound.answered(
                attempt_id, CARRIER, call.uuid, call.conversation_uuid
            )
        except StorageError as exc:
            log.error("Vonage outbound answer failed: %s", exc)
            return Response("unavailable", status_code=503)
        if pending is None:
            return JSONResponse([])  # an NCCO that runs out: Vonage hangs up
        return JSONResponse(connect(call, pending))

    async def event(request: Request) -> Response:
        body = await request.body()
        attempt_id = attempt_of(request, body)
        if attempt_id is None:
            return Response("invalid signature or attempt", status_code=403)
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            return Response("event body is not JSON", status_code=400)
        if not isinstance(doc, dict):
            return Response("event body is not a JSON object", status_code=400)
        status, call_uuid = doc.get("status"), doc.get("uuid")
        if not isinstance(status, str) or not isinstance(call_uuid, str) or not call_uuid:
            return Response("event without a status or uuid", status_code=400)
        sub_state = doc.get("sub_state")
        sub_state = sub_state if isinstance(sub_state, str) else ""
        try:
            if status in AMD_STATUSES:
                await outbound.machine(
                    attempt_id,
                    CARRIER,
                    call_uuid,
                    machine_verdict(status, sub_state),
                    answered_by(status, sub_state),
                )
            else:
                value = call_status(status)
                if value is not None:
                    await outbound.status(attempt_id, CARRIER, call_uuid, value)
                # Other events (record, input, transfer …) are not ours to act on.
        except (StorageError, CarrierError) as exc:
            # A 5xx: Vonage retries the event.
            log.error("Vonage outbound event %s failed: %s", status, exc)
            return Response("unavailable", status_code=503)
        return Response(status_code=204)

    tail = f"/outbound/{CARRIER}/"
    for prefix in (TWILIO_PREFIX, REPLICA_PREFIX + "/{replica}"):
        router.add_api_route(prefix + tail + "answer", answer, methods=["GET"])
        router.add_api_route(prefix + tail + "event", event, methods=["POST"])
    return router
