"""Plivo's callbacks for the calls the bridge places (:mod:`phonebridge.telephony.plivo.dialer`).

``{sticky}/outbound/plivo/<kind>?attempt=<id>``, each a form POST V3-signed
like every Plivo request (:func:`~phonebridge.web.carriers.plivo.form_verifier`:
forged, unsigned or replayed → 403, nothing changes):

- ``answer`` (``answer_url``): the callee answered; the answer is the same
  ``<Stream bidirectional keepCallAlive>`` as an inbound call's, for the
  reservation :meth:`Outbound.answered` returns (``<Hangup/>`` when there is none);
- ``ring`` and ``hangup`` (``ring_url``, ``hangup_url``): ``CallStatus``
  (busy, no-answer, cancel, timeout, failed, completed…) → :meth:`Outbound.status`;
- ``machine/voicemail`` and ``machine/hangup`` (``machine_detection_url``):
  ``Machine`` → :meth:`Outbound.machine`, the mode in the path saying what the
  persona asked (see :func:`~phonebridge.telephony.plivo.dialer.machine_verdict`).

The carrier id passed on is ``CallUUID``: the id the stream's start and the
REST hang-up/transfer use (for a call placed by the API it is the
``request_uuid`` the create answered, see the dialer's docstring).

Written under this process's sticky prefix, served for every replica id and
at the single-process ``/twilio`` path: a dead replica's callbacks are settled
by a survivor from the call index.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import get_args

from fastapi import APIRouter, Request
from fastapi.responses import Response

from phonebridge.calls.bridge import Hangup
from phonebridge.calls.pending import PendingCall
from phonebridge.config import REPLICA_PREFIX, TWILIO_PREFIX
from phonebridge.errors import StorageError
from phonebridge.outbound.carrier import CarrierError, MachineDetection
from phonebridge.outbound.service import Outbound
from phonebridge.outbound.store import is_attempt_id
from phonebridge.telephony.plivo.dialer import call_status, machine_verdict
from phonebridge.web.carriers.plivo import CARRIER, XML, render

log = logging.getLogger(__name__)

_MODES: frozenset[str] = frozenset(get_args(MachineDetection))


def _call_uuid(form: dict[str, str]) -> str:
    """``CallUUID``; a callback without one (none documented) falls back on the request's."""
    return form.get("CallUUID") or form.get("RequestUUID") or form.get("ALegRequestUUID", "")


SignedForm = Callable[[Request], Awaitable[dict[str, str] | None]]


def plivo_outbound_router(
    outbound: Outbound, signed_form: SignedForm, document: Callable[[PendingCall], str]
) -> APIRouter:
    """``signed_form``: the V3 check (``form_verifier``); ``document``: the answered
    call's ``<Stream>`` (``stream_answer``)."""
    router = APIRouter()
    tail = f"/outbound/{CARRIER}/"

    async def signed(request: Request) -> tuple[str, dict[str, str]] | None:
        form = await signed_form(request)
        attempt_id = request.query_params.get("attempt", "")
        if form is None or not is_attempt_id(attempt_id):
            return None
        return attempt_id, form

    async def answer(request: Request) -> Response:
        found = await signed(request)
        if found is None:
            return Response("invalid signature or attempt", status_code=403)
        attempt_id, form = found
        try:
            pending = await outbound.answered(attempt_id, CARRIER, _call_uuid(form))
        except StorageError as exc:
            log.error("Plivo outbound answer failed: %s", exc)
            return Response("unavailable", status_code=503)
        text = document(pending) if pending is not None else render(Hangup())
        return Response(text, media_type=XML)

    async def status(request: Request) -> Response:
        found = await signed(request)
        if found is None:
            return Response("invalid signature or attempt", status_code=403)
        attempt_id, form = found
        value = call_status(form.get("CallStatus", ""))
        if value is None:
            log.warning("Plivo outbound callback with CallStatus %r", form.get("CallStatus"))
            return Response("unknown CallStatus", status_code=400)
        try:
            await outbound.status(attempt_id, CARRIER, _call_uuid(form), value)
        except StorageError as exc:
            log.error("Plivo outbound status failed: %s", exc)
            return Response("unavailable", status_code=503)  # Plivo retries
        return Response(status_code=200)

    async def machine(request: Request, mode: str) -> Response:
        if mode not in _MODES:
            return Response("unknown machine detection mode", status_code=404)
        found = await signed(request)
        if found is None:
            return Response("invalid signature or attempt", status_code=403)
        attempt_id, form = found
        said = form.get("Machine", "")
        try:
            await outbound.machine(
                attempt_id,
                CARRIER,
                _call_uuid(form),
                machine_verdict(said, mode),  # type: ignore[arg-type]
                f"Machine={said}",
            )
        except (StorageError, CarrierError) as exc:
            log.error("Plivo outbound machine verdict failed: %s", exc)
            return Response("unavailable", status_code=503)
        return Response(status_code=200)

    for prefix in (TWILIO_PREFIX, REPLICA_PREFIX + "/{replica}"):
        router.add_api_route(prefix + tail + "answer", answer, methods=["POST"])
        router.add_api_route(prefix + tail + "ring", status, methods=["POST"])
        router.add_api_route(prefix + tail + "hangup", status, methods=["POST"])
        router.add_api_route(prefix + tail + "machine/{mode}", machine, methods=["POST"])
    return router
