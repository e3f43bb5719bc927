"""Plivo routes (CARRIERS.md §2).

- ``POST /plivo/voice``: the answer_url request, V3-signed (HMAC-SHA256 over
  the configured URL, the sorted form and a nonce; a nonce is accepted once).
  The answer is ``<Stream bidirectional keepCallAlive>`` with L16 at the leg's
  rate, or ``<Speak>``/``<Hangup>`` when the call is not taken.
- ``WS <sticky>/plivo/media/<token>``: Plivo documents no handshake auth
  (§2.2), so the socket is authenticated by its unguessable path: the
  one-time token of a pending Plivo call (``extraHeaders`` allow only
  ``[A-Za-z0-9]``, which the token is not).
- ``POST /plivo/status`` (and under the sticky prefix): the stream's status
  callbacks; a ``DroppedStream`` for a pending call frees it at once.
- After the stream: with ``keepCallAlive`` and nothing after ``<Stream>`` the
  call ends when the stream closes, so a call the bridge ended gets its
  fallback over REST *before* the socket closes: ``legs=aleg`` transfer to
  ``<sticky>/plivo/after/<uuid>`` (which serves the ``<Speak>``/``<Dial>``
  document), or a ``DELETE`` hang-up. An outbound call's voicemail
  (``CallEndReason.VOICEMAIL``) is ``<Wait beep="true">`` before its
  ``<Speak>``: Plivo's machine detection gives no greeting-end verdict.

Calls the bridge places through Plivo answer with the same ``<Stream>``
(:func:`stream_answer`) and their callbacks are checked by the same
:func:`form_verifier` (``plivo_outbound.py``).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable
from xml.etree.ElementTree import Element, SubElement, tostring

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import Response

from phonebridge.calls.bridge import AfterStream, Hangup, PhoneCall, Say, Transfer
from phonebridge.calls.outcome import CallEndReason
from phonebridge.calls.pending import PendingCall
from phonebridge.calls.personal import carrier_fields
from phonebridge.config import REPLICA_PREFIX
from phonebridge.telephony.carrier_leg import LegSpec
from phonebridge.telephony.carrier_rest import PlivoApi
from phonebridge.telephony.plivo import xml as plivo_xml
from phonebridge.telephony.plivo.protocol import PlivoStream
from phonebridge.telephony.plivo.signature import NONCE_HEADER, SIGNATURE_HEADER, validate
from phonebridge.telephony.seen import SeenValues
from phonebridge.telephony.vonage.protocol import e164
from phonebridge.web.carriers.common import CarrierEdge, refuse_before_accept, serve_stream

log = logging.getLogger(__name__)

CARRIER = "plivo"
XML = "application/xml"
AFTER_DOCUMENTS = 512  # fallback documents kept for Plivo to fetch (it does so at once)
VOICEMAIL_WAIT_SECONDS = 30  # the longest <Wait beep> before an outbound voicemail is spoken


def render(answer: AfterStream) -> str:
    match answer:
        case Say(message=message):
            return plivo_xml.speak_and_hangup(message)
        case Transfer(number=number, message=message):
            return plivo_xml.dial(number, message)
    response = Element("Response")
    SubElement(response, "Hangup")
    return '<?xml version="1.0" encoding="UTF-8"?>' + tostring(response, encoding="unicode")


def form_verifier(
    edge: CarrierEdge, auth_token: str
) -> Callable[[Request], Awaitable[dict[str, str] | None]]:
    """The V3 check of every Plivo request (answer, status, after, outbound callbacks):
    the form when Plivo signed it for the configured URL with a fresh nonce, else None."""
    nonces = SeenValues()

    async def signed_form(request: Request) -> dict[str, str] | None:
        form = {key: str(value) for key, value in (await request.form()).items()}
        url = edge.signed_url(request.url.path, request.url.query)
        nonce = request.headers.get(NONCE_HEADER)
        if validate(
            auth_token,
            "POST",
            url,
            form,
            nonce=nonce,
            signature_header=request.headers.get(SIGNATURE_HEADER),
        ) and nonces.first_use("plivo:" + (nonce or ""), edge.wall_clock()):
            return form
        log.warning("Plivo request with a bad, missing or replayed signature for %s", url)
        return None

    return signed_form


def stream_answer(edge: CarrierEdge) -> Callable[[PendingCall], str]:
    """The ``<Stream bidirectional keepCallAlive>`` for a reserved call, inbound or outbound."""

    def document(pending: PendingCall) -> str:
        return plivo_xml.stream(
            edge.websocket_url(edge.sticky(CARRIER, f"media/{pending.token}")),
            sample_rate=edge.rate,
            headers={},
            status_callback=edge.webhook_url(edge.sticky(CARRIER, "status")),
        )

    return document


def plivo_router(edge: CarrierEdge, *, auth_token: str, api: PlivoApi) -> APIRouter:
    router = APIRouter()
    spec = LegSpec(CARRIER, lambda note: PlivoStream(note=note), has_stop=False)
    after_documents: collections.OrderedDict[str, str] = collections.OrderedDict()
    signed_form = form_verifier(edge, auth_token)
    stream_document = stream_answer(edge)

    @router.post("/plivo/voice")
    async def voice(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response("invalid signature", status_code=403)
        call_uuid = form.get("CallUUID", "")
        if not call_uuid or not form.get("To"):
            return Response("answer request without CallUUID or To", status_code=400)
        answer = await edge.bridge.answer_phone(
            PhoneCall(
                channel=CARRIER,
                call_sid=edge.call_sid(CARRIER, call_uuid),
                from_number=e164(form.get("From", "")),
                to_number=e164(form["To"]),
                sample_rate=edge.rate,
                fields=carrier_fields(form),
            )
        )
        if not isinstance(answer, PendingCall):
            return Response(render(answer), media_type=XML)
        return Response(stream_document(answer), media_type=XML)

    async def status(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response("invalid signature", status_code=403)
        pending = edge.bridge.pending.by_call_sid(edge.call_sid(CARRIER, form.get("CallUUID", "")))
        event = form.get("Event")
        if event in ("DroppedStream", "StopStream") and pending is not None:
            # Dropped, or stopped before it claimed the call (a socket we refused
            # after the upgrade): free the model session now, not at the deadline.
            await edge.bridge.abandon(pending, CallEndReason.NO_STREAM, f"Plivo {event}")
        return Response(status_code=200)

    async def after(request: Request, call_uuid: str) -> Response:
        if await signed_form(request) is None:
            return Response("invalid signature", status_code=403)
        document = after_documents.pop(call_uuid, None) or render(Hangup())
        return Response(document, media_type=XML)

    router.add_api_route("/plivo/status", status, methods=["POST"])
    router.add_api_route(edge.sticky(CARRIER, "status"), status, methods=["POST"])
    # Any replica serves a fallback document it holds; the transfer names the
    # replica that wrote it, so the edge proxy routes the fetch there.
    router.add_api_route(edge.sticky(CARRIER, "after/{call_uuid}"), after, methods=["POST"])
    if edge.sticky_prefix.startswith(REPLICA_PREFIX):
        router.add_api_route(
            f"{REPLICA_PREFIX}/{{replica}}/{CARRIER}/after/{{call_uuid}}", after, methods=["POST"]
        )

    @router.websocket(edge.sticky(CARRIER, "media/{token}"))
    async def media(websocket: WebSocket, token: str) -> None:
        if edge.pending_of(CARRIER, token) is None:
            await refuse_before_accept(websocket, CARRIER, "unknown stream path")
            return

        def before_close(pending: PendingCall, call_uuid: str) -> Callable[[], Awaitable[None]]:
            async def continue_call() -> None:
                outcome = edge.bridge.outcomes.pop(pending.call_sid)
                if outcome is None or not outcome.reason.caller_on_line:
                    return
                answer = edge.bridge.decide(outcome)
                if isinstance(answer, Hangup):
                    await api.hang_up(call_uuid)
                    return
                after_documents[call_uuid] = (
                    # Plivo's machine detection has no beep verdict: its XML waits for it.
                    plivo_xml.voicemail_after_beep(
                        answer.message, wait_seconds=VOICEMAIL_WAIT_SECONDS
                    )
                    if outcome.reason is CallEndReason.VOICEMAIL and isinstance(answer, Say)
                    else render(answer)
                )
                while len(after_documents) > AFTER_DOCUMENTS:
                    after_documents.popitem(last=False)
                url = edge.webhook_url(edge.sticky(CARRIER, f"after/{call_uuid}"))
                await api.transfer(call_uuid, url)

            return continue_call

        await serve_stream(edge, websocket, spec, upgrade_token=token, before_close=before_close)

    return router
