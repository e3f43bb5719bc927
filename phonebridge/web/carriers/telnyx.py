"""Telnyx Call Control routes (CARRIERS.md §1; why Call Control: telephony/telnyx/callcontrol.py).

- ``POST /telnyx/voice``: every Call Control webhook, Ed25519-signed over
  ``timestamp|body`` (checked against the portal's public key, 5 min
  tolerance). ``call.initiated`` is answered ``200`` at once and the call is
  answered over REST in the background: ``actions/answer`` then
  ``actions/streaming_start`` (L16 both ways at the leg's rate, ``rtp``
  mode, the one-time token as ``stream_auth_token``). A busy or unrouted call
  is answered with ``actions/speak``, and ``call.speak.ended`` hangs it up.
- ``WS <sticky>/telnyx/media``: the upgrade must carry
  ``x-telnyx-streaming-auth-token`` = the token of a pending Telnyx call.
- After the stream nothing runs unless we command it: when the bridge ended
  the call, the leg's close speaks the fallback (then hangs up), transfers,
  or hangs up over REST. A 404 (the call is gone) is success.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import Response

from phonebridge.calls.bridge import AfterStream, Hangup, PhoneCall, Say, Transfer
from phonebridge.calls.outcome import CallEndReason, CallOutcome
from phonebridge.calls.pending import PendingCall
from phonebridge.errors import PhonebridgeError, RemoteProtocolError
from phonebridge.telephony.carrier_leg import LegSpec
from phonebridge.telephony.carrier_rest import TelnyxApi
from phonebridge.telephony.telnyx import callcontrol
from phonebridge.telephony.telnyx.protocol import TelnyxStream
from phonebridge.telephony.telnyx.signature import (
    SIGNATURE_HEADER,
    STREAM_TOKEN_HEADER,
    TIMESTAMP_HEADER,
    verify_webhook,
)
from phonebridge.telephony.vonage.protocol import e164
from phonebridge.web.carriers.common import CarrierEdge, refuse_before_accept, serve_stream

log = logging.getLogger(__name__)

CARRIER = "telnyx"


def commands(answer: AfterStream) -> list[tuple[str, dict[str, Any]]]:
    """The Call Control commands that carry out ``answer`` once the stream is over.

    One command each, and nothing after a ``transfer``: Call Control runs no
    document, so nothing is left to cut the caller off while they talk to the
    human (the TeXML pitfall, tests/telephony/test_no_timed_verb_after_stream.py).
    A ``speak``'s hang-up follows Telnyx's ``call.speak.ended`` webhook.
    """
    match answer:
        case Say(message=message):
            return [("speak", callcontrol.speak_command(message))]
        case Transfer(number=number):
            return [("transfer", callcontrol.transfer_command(number))]
    # Hangup (and Join, which a Telnyx leg never gets: it hands over cold only).
    return [("hangup", {})]


def media_path(edge: CarrierEdge) -> str:
    """The media socket's path under this replica's sticky prefix."""
    return edge.sticky(CARRIER, "media")


async def act(api: TelnyxApi, call_id: str, answer: AfterStream) -> None:
    for action, body in commands(answer):
        await api.action(call_id, action, body)


async def start_stream(
    edge: CarrierEdge, api: TelnyxApi, call_id: str, pending: PendingCall, client_state: str
) -> None:
    """``actions/streaming_start`` for an answered call's reservation (inbound after
    ``actions/answer``; outbound on ``call.answered``); the reservation is freed when
    the call is gone or the command fails."""
    try:
        body = callcontrol.streaming_start_command(
            edge.websocket_url(media_path(edge)),
            auth_token=pending.token,
            sample_rate=edge.rate,
            parameters={"token": pending.token},
            client_state=client_state,
        )
        if not await api.action(call_id, "streaming_start", body):
            await edge.bridge.abandon(pending, CallEndReason.NO_STREAM, "call gone")
    except PhonebridgeError as exc:
        log.error("Telnyx streaming_start failed: %s", exc, extra={"call_sid": call_id})
        await edge.bridge.abandon(pending, CallEndReason.NO_STREAM, f"answer failed: {exc}")


async def stream_gone(
    edge: CarrierEdge, api: TelnyxApi, hook: callcontrol.CallWebhook, call_sid: str
) -> None:
    """``streaming.failed`` / ``streaming.stopped`` / ``call.hangup``: a reservation the
    stream never claimed is freed now, and a caller still there gets the fallback."""
    pending = edge.bridge.pending.by_call_sid(call_sid)
    if pending is None:
        if hook.event_type == "call.hangup":
            # Call Control webhooks reach any replica: the one holding the call
            # pending (if any) frees it when told (coordination/ RingingHangups).
            await edge.bridge.tell_replicas_ringing_ended(call_sid)
        return
    # (a socket we refused after the upgrade, e.g. media before start, is a
    # stream that *stopped*: the caller is still there)
    await edge.bridge.abandon(
        pending, CallEndReason.NO_STREAM, f"{hook.event_type} before the stream"
    )
    if hook.event_type == "call.hangup":
        edge.bridge.metrics.ringing_hangups.labels("local").inc()
    else:
        outcome = CallOutcome(call_sid, pending.persona.id, CallEndReason.NO_STREAM)
        fallback = edge.bridge.decide(outcome)
        call_id = hook.call_control_id
        edge.spawn(quiet(act(api, call_id, fallback), call_id), f"{call_id}:fallback")


def hang_up_after_speak(edge: CarrierEdge, api: TelnyxApi, call_id: str) -> None:
    """``call.speak.ended``: what we said before a hang-up has been said."""
    edge.spawn(quiet(act(api, call_id, Hangup()), call_id), f"{call_id}:hangup")


async def signed_webhook(
    request: Request, public_key: Ed25519PublicKey, now: float, what: str
) -> callcontrol.CallWebhook | Response:
    """The request's Call Control webhook, or the refusal to answer: 403 for a bad or
    missing Ed25519 signature (logged, naming ``what``), 400 for a body that is not one."""
    body = await request.body()
    if not verify_webhook(
        public_key,
        body,
        signature=request.headers.get(SIGNATURE_HEADER),
        timestamp=request.headers.get(TIMESTAMP_HEADER),
        now=now,
    ):
        log.warning("Telnyx %s with a bad or missing signature", what)
        return Response("invalid signature", status_code=403)
    try:
        return callcontrol.parse_webhook(body)
    except RemoteProtocolError as exc:
        return Response(str(exc), status_code=400)


def telnyx_router(edge: CarrierEdge, *, public_key: Ed25519PublicKey, api: TelnyxApi) -> APIRouter:
    router = APIRouter()
    spec = LegSpec(
        CARRIER,
        lambda note: TelnyxStream(out_codec="L16", out_rate=edge.rate, note=note),
        has_stop=True,
    )

    async def answer_call(call_id: str, answer: PendingCall | Say | Hangup) -> None:
        try:
            if isinstance(answer, PendingCall):
                await api.action(call_id, "answer", callcontrol.answer_command("phonebridge"))
                await start_stream(edge, api, call_id, answer, "phonebridge")
                return
            if isinstance(answer, Say):
                await api.action(call_id, "answer", callcontrol.answer_command("phonebridge"))
            await act(api, call_id, answer)
        except PhonebridgeError as exc:
            log.error("Telnyx answer failed: %s", exc, extra={"call_sid": call_id})
            if isinstance(answer, PendingCall):
                await edge.bridge.abandon(answer, CallEndReason.NO_STREAM, f"answer failed: {exc}")

    @router.post("/telnyx/voice")
    async def voice(request: Request) -> Response:
        hook = await signed_webhook(request, public_key, edge.wall_clock(), "webhook")
        if isinstance(hook, Response):
            return hook
        call_id = hook.call_control_id
        call_sid = edge.call_sid(CARRIER, call_id)
        match hook.event_type:
            case "call.initiated":
                if edge.bridge.pending.by_call_sid(call_sid) is not None:
                    return Response(status_code=200)  # a retried webhook: already answering
                answer = await edge.bridge.answer_phone(
                    PhoneCall(
                        channel=CARRIER,
                        call_sid=call_sid,
                        from_number=e164(hook.from_number),
                        to_number=e164(hook.to_number),
                        account_sid=hook.call_session_id,
                        sample_rate=edge.rate,
                    )
                )
                edge.spawn(answer_call(call_id, answer), f"{call_id}:telnyx-answer")
            case "call.speak.ended":
                hang_up_after_speak(edge, api, call_id)
            case "streaming.failed" | "streaming.stopped" | "call.hangup":
                await stream_gone(edge, api, hook, call_sid)
        return Response(status_code=200)

    @router.websocket(media_path(edge))
    async def media(websocket: WebSocket) -> None:
        token = websocket.headers.get(STREAM_TOKEN_HEADER)
        if edge.pending_of(CARRIER, token) is None:
            await refuse_before_accept(websocket, CARRIER, "no valid streaming auth token")
            return

        def before_close(pending: PendingCall, call_id: str) -> Callable[[], Awaitable[None]]:
            async def after() -> None:
                outcome = edge.bridge.outcomes.pop(pending.call_sid)
                if outcome is not None and outcome.reason.caller_on_line:
                    await act(api, call_id, edge.bridge.decide(outcome))

            return after

        await serve_stream(edge, websocket, spec, upgrade_token=token, before_close=before_close)

    return router


async def quiet(job: Awaitable[None], call_id: str) -> None:
    try:
        await job
    except PhonebridgeError as exc:
        log.error("Telnyx call control failed: %s", exc, extra={"call_sid": call_id})
