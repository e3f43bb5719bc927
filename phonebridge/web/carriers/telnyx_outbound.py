"""The Call Control events of the calls we place through Telnyx (docs/outbound.md).

The dial's ``webhook_url`` sends *every* event of an outbound call to
``{sticky}/outbound/telnyx/events?attempt=<id>``, never to the application's
``/telnyx/voice``, so the inbound route and this one never see the same call.
What the two share is reused from :mod:`.telnyx`: the stream is started by the
same ``streaming_start`` (the one-time token as ``stream_auth_token``), runs on
the same media socket, and after it the same commands carry out
:meth:`Bridge.decide` (voicemail or opt-out goodbye: ``actions/speak``; a
machine: ``actions/hangup``), the speak's hang-up following
``call.speak.ended`` here.

Verification is the inbound one: Ed25519 over ``timestamp|body`` with the
portal's key, 5 min tolerance (forged: 403, nothing read). The signature does not
cover the URL, so the ``?attempt=`` query is not trusted on its own: the
attempt is the body's ``client_state`` (signed), which the dial and
``streaming_start`` set to the attempt id; a query naming another attempt is
refused.

Events: ``call.answered`` -> :meth:`Outbound.answered`, then ``streaming_start``
(or ``actions/hangup`` when refused); ``call.machine.detection.ended`` /
``call.machine.greeting.ended`` -> :meth:`Outbound.machine`; ``call.hangup`` ->
:meth:`Outbound.status` with its ``hangup_cause`` translated
(:func:`~phonebridge.telephony.telnyx.dialer.call_status`); ``streaming.*`` and
``call.speak.ended`` as for an inbound call. Served for every replica id and at
the single-process path, so a dead replica's events settle from the shared rows.
"""

from __future__ import annotations

import logging

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Request
from fastapi.responses import Response

from phonebridge.calls.bridge import Hangup
from phonebridge.config import REPLICA_PREFIX, TWILIO_PREFIX
from phonebridge.errors import StorageError
from phonebridge.outbound.service import Outbound
from phonebridge.outbound.store import is_attempt_id
from phonebridge.telephony.carrier_rest import TelnyxApi
from phonebridge.telephony.telnyx import callcontrol
from phonebridge.telephony.telnyx.dialer import call_status, machine_verdict
from phonebridge.web.carriers.common import CarrierEdge
from phonebridge.web.carriers.telnyx import (
    CARRIER,
    act,
    hang_up_after_speak,
    quiet,
    signed_webhook,
    start_stream,
    stream_gone,
)

log = logging.getLogger(__name__)

EVENTS_TAIL = "/outbound/telnyx/events"


def telnyx_outbound_router(
    edge: CarrierEdge, outbound: Outbound, *, public_key: Ed25519PublicKey, api: TelnyxApi
) -> APIRouter:
    router = APIRouter()

    async def events(request: Request) -> Response:
        hook = await signed_webhook(request, public_key, edge.wall_clock(), "outbound event")
        if isinstance(hook, Response):
            return hook
        attempt_id = hook.client_state
        named = request.query_params.get("attempt")
        if not is_attempt_id(attempt_id) or (named is not None and named != attempt_id):
            log.warning("Telnyx outbound event for no attempt of ours (%r)", named)
            return Response("invalid attempt", status_code=403)
        try:
            await _handle(edge, outbound, api, hook, attempt_id)
        except StorageError as exc:
            log.error("Telnyx outbound event failed: %s", exc)
            return Response("unavailable", status_code=503)  # Telnyx retries it
        return Response(status_code=200)

    for prefix in (TWILIO_PREFIX, REPLICA_PREFIX + "/{replica}"):
        router.add_api_route(prefix + EVENTS_TAIL, events, methods=["POST"])
    return router


async def _handle(
    edge: CarrierEdge,
    outbound: Outbound,
    api: TelnyxApi,
    hook: callcontrol.CallWebhook,
    attempt_id: str,
) -> None:
    call_id = hook.call_control_id
    call_sid = edge.call_sid(CARRIER, call_id)
    match hook.event_type:
        case "call.answered":
            pending = await outbound.answered(attempt_id, CARRIER, call_id, hook.call_session_id)
            if pending is None:
                edge.spawn(quiet(act(api, call_id, Hangup()), call_id), f"{call_id}:refused")
            else:
                # The state stays the attempt id: every later event must name it.
                edge.spawn(
                    start_stream(edge, api, call_id, pending, attempt_id), f"{call_id}:stream"
                )
        case "call.machine.detection.ended" | "call.machine.greeting.ended":
            verdict = machine_verdict(hook.event_type, hook.result)
            await outbound.machine(attempt_id, CARRIER, call_id, verdict, hook.result or "unknown")
        case "call.speak.ended":
            hang_up_after_speak(edge, api, call_id)
        case "streaming.failed" | "streaming.stopped":
            await stream_gone(edge, api, hook, call_sid)
        case "call.hangup":
            await stream_gone(edge, api, hook, call_sid)
            attempt = await outbound.store.attempt(attempt_id)
            answered = attempt is not None and attempt.state == "answered"
            status = call_status(hook.hangup_cause, answered=answered)
            await outbound.status(attempt_id, CARRIER, call_id, status)
        case _:
            pass  # call.initiated, streaming.started, call.dtmf.received …: nothing to do
