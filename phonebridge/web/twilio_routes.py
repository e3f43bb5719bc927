"""HTTP and WebSocket edges of the Twilio side: signatures, then its entry.

The call logic behind each route is telephony/twilio/entry.py's
:class:`~phonebridge.telephony.twilio.entry.TwilioEntry`.

PROTOCOLS.md §1.4: every request is checked against the URL Twilio signed,
which is built from the configured public base URL, never from the request's
own host or ``X-Forwarded-*`` headers. The media socket is checked *before*
it is accepted: a rejected upgrade costs nothing (no model session is opened
for a socket; the session belongs to the signed webhook and is claimed only
with its one-time token).

Replicas: a process with a replica id writes its stream and ``<Connect
action>`` under ``/twilio/r/<id>/`` (the edge proxy routes on that segment).
It accepts media only under its own path (a pending call lives in one
process's memory), but answers ``/twilio/r/<any id>/stream-ended``: when the
replica named in the path is gone, the proxy sends the request to any
healthy replica, which answers the persona's fallback (telephony/twilio/entry.py). The
signature is checked against the URL Twilio signed: the public URL plus the
path as requested, whichever replica it names.

A warm transfer's human call (telephony/twilio/transfer.py) makes its own
webhooks — ``.../transfer/<id>/whisper``, ``/key``, ``/status`` — under the
same prefix, signed and checked the same way. A replica that does not hold
the transfer (the one that did is gone) tells the human it is too late and
hangs up, rather than leaving them on a silent line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import Response

from phonebridge.calls.transfer.warm import TOO_LATE as TRANSFER_GONE
from phonebridge.config import REPLICA_PREFIX, TWILIO_PREFIX, StreamSignaturePolicy
from phonebridge.errors import RemoteProtocolError
from phonebridge.telephony.twilio import twiml
from phonebridge.telephony.twilio.entry import TwilioEntry
from phonebridge.telephony.twilio.signature import (
    SIGNATURE_HEADER,
    public_request_url,
    validate_stream_upgrade,
    validate_webhook,
)
from phonebridge.web.websocket_io import StarletteSocket

log = logging.getLogger(__name__)

TWIML = "application/xml"


@dataclass(frozen=True, slots=True)
class TwilioAuth:
    """How Twilio's requests are authenticated."""

    auth_token: str
    public_url: str  # the https base URL Twilio reaches
    stream_url: str  # the wss URL written in the TwiML
    # Where this process's stream and <Connect action> live: /twilio, or
    # /twilio/r/<replica id> in a cluster (config.Settings.sticky_prefix).
    sticky_prefix: str = TWILIO_PREFIX
    verify_webhooks: bool = True  # False only with the clearly named development switch
    stream_policy: StreamSignaturePolicy = StreamSignaturePolicy.STRICT


class StarlettePhone(StarletteSocket):
    """A Starlette WebSocket as :class:`phonebridge.telephony.twilio.leg.PhoneSocket`.

    Size limits: the server's ws_max_size bounds a frame (a 1009 close is a
    protocol error of the call, web/websocket_io.py), and the Twilio protocol
    (MAX_MESSAGE_CHARS) rejects an oversize message the same way.
    """


def twilio_router(twilio: TwilioEntry, auth: TwilioAuth) -> APIRouter:
    """The endpoints Twilio talks to (not behind the dashboard's auth).

    Without an auth token (a bridge for other carriers only) Twilio is off
    like any unconfigured carrier: no routes, so its paths answer 404.
    """
    router = APIRouter()
    if not auth.auth_token and auth.verify_webhooks:
        return router
    sticky = auth.sticky_prefix

    async def signed_form(request: Request) -> dict[str, str] | None:
        form = {key: str(value) for key, value in (await request.form()).items()}
        if not auth.verify_webhooks:
            return form
        url = public_request_url(auth.public_url, request.url.path, request.url.query)
        if validate_webhook(auth.auth_token, url, form, request.headers.get(SIGNATURE_HEADER)):
            return form
        log.warning("webhook with a bad or missing signature for %s", url)
        return None

    @router.post("/twilio/voice")
    async def voice(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response("invalid signature", status_code=403)
        try:
            answer = await twilio.voice_webhook(form)
        except RemoteProtocolError as exc:
            return Response(str(exc), status_code=400)
        return Response(answer, media_type=TWIML)

    async def call_status(request: Request) -> Response:
        # Twilio's status callback (set on the number by `twilio configure`): a
        # caller who hangs up while it rings frees the model socket at once
        # (issue 15). Under this replica's prefix, as the stream is: the pending
        # call lives in one process's memory.
        form = await signed_form(request)
        if form is None:
            return Response("invalid signature", status_code=403)
        await twilio.call_status(form)
        return Response(status_code=204)

    # Like the action URL: served at this replica's prefix (where `twilio
    # configure` points the number) and for any other replica id, so a gone
    # replica's status callback finds a route on a survivor (which holds no such
    # call: a 204, not a 404 in Twilio's debugger).
    router.add_api_route(TWILIO_PREFIX + "/call-status", call_status, methods=["POST"])
    router.add_api_route(REPLICA_PREFIX + "/{replica}/call-status", call_status, methods=["POST"])

    async def stream_ended(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response("invalid signature", status_code=403)
        return Response(await twilio.stream_ended(form), media_type=TWIML)

    # Served for every replica id, not just this one's (see the module docstring),
    # and at the single-process path, so no action request finds no route.
    router.add_api_route(TWILIO_PREFIX + "/stream-ended", stream_ended, methods=["POST"])
    router.add_api_route(REPLICA_PREFIX + "/{replica}/stream-ended", stream_ended, methods=["POST"])

    async def transfer_step(request: Request, transfer_id: str, step: str) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response("invalid signature", status_code=403)
        human_calls = twilio.human_calls
        if step == "status":
            if human_calls is not None:
                human_calls.status(transfer_id, form)
            return Response(status_code=204)
        if step not in ("whisper", "key"):
            return Response("not found", status_code=404)
        if human_calls is None:
            return Response(twiml.say_and_hangup(TRANSFER_GONE), media_type=TWIML)
        answer = (human_calls.whisper if step == "whisper" else human_calls.key)(transfer_id, form)
        return Response(answer, media_type=TWIML)

    transfer_path = "/transfer/{transfer_id}/{step}"
    router.add_api_route(TWILIO_PREFIX + transfer_path, transfer_step, methods=["POST"])
    router.add_api_route(
        REPLICA_PREFIX + "/{replica}" + transfer_path, transfer_step, methods=["POST"]
    )

    @router.websocket(sticky + "/media")
    async def media(websocket: WebSocket) -> None:
        if not _stream_allowed(websocket, auth):
            # Closing before accept() answers the upgrade with HTTP 403.
            await websocket.close(code=1008)
            return
        await websocket.accept()
        await twilio.media_stream(StarlettePhone(websocket))

    return router


def _stream_allowed(websocket: WebSocket, auth: TwilioAuth) -> bool:
    if auth.stream_policy is StreamSignaturePolicy.OFF:
        return True
    signature = websocket.headers.get(SIGNATURE_HEADER)
    valid = validate_stream_upgrade(auth.auth_token, auth.stream_url, signature)
    if valid:
        return True
    log.warning(
        "media upgrade with a %s signature (policy %s)",
        "missing" if signature is None else "bad",
        auth.stream_policy.value,
    )
    return auth.stream_policy is StreamSignaturePolicy.LOG
