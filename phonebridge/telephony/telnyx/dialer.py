"""Placing calls with Telnyx Call Control, and reading its call events.

What this relies on (Telnyx's API reference and its Stainless-generated Python
SDK, ``team-telnyx/telnyx-python``: ``types/call_dial_params.py``,
``call_dial_response.py``, ``call_hangup.py``, ``call_machine_detection_ended.py``,
``call_machine_greeting_ended.py``, ``call_retrieve_status_response.py``,
``connection_list_active_calls_response.py``, ``call_event_list_params.py``):

- **Dial**: ``POST /v2/calls`` (Bearer API key), JSON ``connection_id`` (the
  Call Control application: ``TELNYX_CONNECTION_ID``), ``to``, ``from``,
  ``webhook_url`` + ``webhook_url_method`` (the per-call override: every
  later event of the call comes to our ``…/outbound/telnyx/events``, not to the
  application's URL), ``timeout_secs`` (ring; Telnyx takes 5-600),
  ``answering_machine_detection``, ``client_state`` (base64 of our attempt id:
  echoed in every event, and listed with the connection's active calls) and
  ``command_id`` (the attempt id again: Telnyx ignores a second dial with the
  same one, so a retried request rings nobody twice). The answer is
  ``data.call_control_id``.
- **Answering machines**: ``detect`` sends ``call.machine.detection.ended``
  (``human`` | ``machine`` | ``not_sure``): enough to hang up on a machine.
  ``detect_beep`` also sends ``call.machine.greeting.ended`` (``beep_detected``)
  *only if* a beep is heard: a voicemail is left after it. A machine whose
  greeting has no beep gets no voicemail; the persona talks to it until it
  hangs up (the machine's own time-out).
- **Hang-up causes** (``call.hangup`` ``hangup_cause``): ``call_rejected``,
  ``normal_clearing``, ``originator_cancel``, ``timeout`` (``timeout_secs``
  passed), ``time_limit``, ``user_busy``, ``not_found``, ``no_answer``,
  ``unspecified``: :func:`call_status`.
- **Fetch**: ``GET /v2/calls/{call_control_id}`` answers only ``is_alive`` (and
  ``call_duration``, ``start_time``, ``end_time``), no status word and no cause.
- **Hang up**: ``actions/hangup``; a 404, or 422 (Telnyx's ``90018`` "call has
  already ended"), is success.

Crash recovery (:meth:`TelnyxDialer.find`): Telnyx has no list of calls by
to/from. What it has, and what this uses:

1. ``GET /v2/connections/{connection_id}/active_calls`` (paged): every live call
   of the application with its ``client_state``; a call whose state is our
   attempt id is the lost one. *Unverified*: whether a call still ringing is
   listed (the reference says "active").
2. ``GET /v2/call_events`` (``filter[connection_id]``, ``[to]``, ``[from]``,
   ``[type]=webhook``, ``[name]=call.hangup``, ``[occurred_at][gte]``): the
   calls to that number that have *ended* since the claim. The documented
   event carries ``call_leg_id`` and a ``metadata`` object "with the raw event"
   whose shape the reference does not give: this reads a ``payload`` (the
   event's, with ``call_control_id``, ``client_state`` and ``hangup_cause``) from
   ``metadata``, ``metadata.event`` or ``metadata.data``. A call whose
   ``client_state`` is another attempt's is not ours; one without a readable
   state is taken as ours (by to/from, as Twilio's list is) and, without a
   readable cause, ended ``failed``.

What cannot be found: an ended call whose events are older than 24 hours (the
events list covers one day without a leg id; claims are looked up within a
minute of a restart, and every 30 s), and an ended call whose event Telnyx did
not record. Then the claim is released and the contact may be rung again on
its next attempt. ``command_id`` keeps a *retried* request from ringing twice;
nothing protects against that second case but the events list.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from phonebridge.outbound.carrier import (
    CallStatus,
    CarrierCall,
    CarrierError,
    DialRequest,
    MachineVerdict,
)

log = logging.getLogger(__name__)

MIN_TIMEOUT_SECS: Final = 5  # Telnyx's range for timeout_secs is 5..600
MAX_TIMEOUT_SECS: Final = 600
PAGE_SIZE: Final = 250
MAX_PAGES: Final = 40  # 10 000 live calls: far beyond one application's

_UNANSWERED: Final[Mapping[str, CallStatus]] = {
    "timeout": "no-answer",
    "no_answer": "no-answer",
    "user_busy": "busy",
    "originator_cancel": "canceled",
    "call_rejected": "failed",
    "not_found": "failed",
    "unspecified": "failed",
    "normal_clearing": "failed",  # ended before any answer: nobody was reached
    "time_limit": "failed",
}


def call_status(hangup_cause: str, *, answered: bool) -> CallStatus:
    """The outcome of a ``call.hangup``: once answered, a call ended ``completed``
    whatever the cause (it was a conversation); before, its cause says why nobody
    was reached (an unknown cause: ``failed``)."""
    if answered:
        return "completed"
    return _UNANSWERED.get(hangup_cause, "failed")


def machine_verdict(event_type: str, result: str) -> MachineVerdict:
    """``call.machine.detection.ended`` (``human``/``machine``/``not_sure``) and
    ``call.machine.greeting.ended`` (``beep_detected``/``ended``/``not_sure``)."""
    if event_type == "call.machine.detection.ended":
        return {"human": "human", "machine": "machine"}.get(result, "unknown")  # type: ignore[return-value]
    if event_type == "call.machine.greeting.ended" and result in ("beep_detected", "ended"):
        return "message_end"
    return "unknown"


def encode_state(text: str) -> str:
    """``client_state`` is base64 (Telnyx refuses anything else)."""
    return base64.b64encode(text.encode()).decode()


def decode_state(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


class TelnyxDialer:
    """Places calls with Telnyx Call Control's ``POST /v2/calls``."""

    name = "telnyx"
    label = "Telnyx"
    leaves_voicemail = True  # detect_beep: call.machine.greeting.ended

    def __init__(
        self, http: httpx.AsyncClient, *, api_url: str, api_key: str, connection_id: str
    ) -> None:
        self._http = http
        self._base = api_url.rstrip("/") + "/v2"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self.connection_id = connection_id

    async def place(self, request: DialRequest) -> CarrierCall:
        # detect_beep reports the greeting's end (the beep) after the machine verdict,
        # which is when a voicemail should start; detect is all a hang-up needs.
        detection = "detect_beep" if request.machine == "voicemail" else "detect"
        body = {
            "connection_id": self.connection_id,
            "to": request.to,
            "from": request.from_,
            "webhook_url": request.callback_url("events"),
            "webhook_url_method": "POST",
            "timeout_secs": max(MIN_TIMEOUT_SECS, min(MAX_TIMEOUT_SECS, request.ring_seconds)),
            "answering_machine_detection": detection,
            "client_state": encode_state(request.attempt_id),
            "command_id": request.attempt_id,
        }
        data = await self._json("POST", "/calls", json=body)
        call_id = _text(data, "call_control_id")
        if not call_id:
            raise CarrierError(f"{self.label} API: dial answered without a call_control_id")
        return CarrierCall(call_id, "queued", request.to, request.from_)

    async def fetch(self, call_sid: str) -> CarrierCall | None:
        try:
            data = await self._json("GET", f"/calls/{call_sid}")
        except CarrierError as exc:
            if exc.status == 404:
                return None
            raise
        if data.get("is_alive") is True:
            return CarrierCall(call_sid, "in-progress", "", "")
        # Ended: the status resource has no cause; the call's hang-up event has.
        leg = _text(data, "call_leg_id")
        cause = await self._hangup_cause(leg) if leg else None
        if cause is None:
            duration = data.get("call_duration")
            answered = isinstance(duration, int) and duration > 0
            return CarrierCall(call_sid, "completed" if answered else "failed", "", "")
        status = call_status(cause, answered=cause == "normal_clearing")
        return CarrierCall(call_sid, status, "", "")

    async def find(
        self, *, attempt_id: str, to: str, from_: str, since: datetime
    ) -> Sequence[CarrierCall]:
        """The attempt's call: live (the connection's active calls, by ``client_state``)
        or ended since ``since`` (the call events of that number). See the module
        docstring for what cannot be found."""
        live = [
            CarrierCall(_text(call, "call_control_id"), "in-progress", to, from_)
            for call in await self._pages(f"/connections/{self.connection_id}/active_calls", {})
            if decode_state(call.get("client_state")) == attempt_id
            and _text(call, "call_control_id")
        ]
        if live:
            return live
        ended: list[CarrierCall] = []
        events = await self._pages(
            "/call_events",
            {
                "filter[connection_id]": self.connection_id,
                "filter[to]": to,
                "filter[from]": from_,
                "filter[type]": "webhook",
                "filter[name]": "call.hangup",
                "filter[occurred_at][gte]": since.astimezone(UTC).isoformat(),
            },
        )
        for event in events:
            payload = _event_payload(event)
            state = decode_state(payload.get("client_state"))
            if state is not None and state != attempt_id:
                continue  # another attempt's call to the same number
            call_id = _text(payload, "call_control_id") or _text(event, "call_leg_id")
            if not call_id:
                continue
            cause = _text(payload, "hangup_cause")
            status = call_status(cause, answered=cause == "normal_clearing") if cause else "failed"
            ended.append(CarrierCall(call_id, status, to, from_))
        return ended

    async def hang_up(self, call_sid: str) -> None:
        try:
            await self._json("POST", f"/calls/{call_sid}/actions/hangup", json={})
        except CarrierError as exc:
            if exc.status not in (404, 422):  # gone, or 90018 "call has already ended"
                raise

    # -- helpers -------------------------------------------------------------------

    async def _hangup_cause(self, leg_id: str) -> str | None:
        events = await self._pages(
            "/call_events",
            {"filter[leg_id]": leg_id, "filter[type]": "webhook", "filter[name]": "call.hangup"},
        )
        for event in events:
            cause = _text(_event_payload(event), "hangup_cause")
            if cause:
                return cause
        return None

    async def _pages(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for number in range(1, MAX_PAGES + 1):
            query = {**params, "page[number]": str(number), "page[size]": str(PAGE_SIZE)}
            doc = await self._request("GET", path, params=query)
            items = doc.get("data")
            if not isinstance(items, list):
                raise CarrierError(f"{self.label} API {path}: no data list")
            found.extend(item for item in items if isinstance(item, dict))
            meta = doc.get("meta")
            total = meta.get("total_pages") if isinstance(meta, dict) else None
            if not isinstance(total, int) or number >= total or not items:
                return found
        log.warning("%s API %s: more than %d pages; the rest not read", self.label, path, MAX_PAGES)
        return found

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        doc = await self._request(method, path, **kwargs)
        data = doc.get("data")
        if not isinstance(data, dict):
            raise CarrierError(f"{self.label} API {method} {path}: no data object")
        return data

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        url = self._base + path
        try:
            response = await self._http.request(method, url, headers=self._headers, **kwargs)
        except httpx.HTTPError as exc:
            raise CarrierError(f"{self.label} API {method} {path} failed: {exc!r}") from exc
        if response.status_code >= 300:
            raise CarrierError(
                f"{self.label} API {method} {path}: HTTP {response.status_code} "
                f"{_error_title(response)}",
                status=response.status_code,
                code=_error_code(response),
            )
        try:
            doc = response.json()
        except json.JSONDecodeError as exc:
            raise CarrierError(f"{self.label} API {method} {path}: not JSON") from exc
        if not isinstance(doc, dict):
            raise CarrierError(f"{self.label} API {method} {path}: not a JSON object")
        return doc


def _text(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key)
    return value if isinstance(value, str) else ""


def _event_payload(event: Mapping[str, Any]) -> dict[str, Any]:
    """The raw event's payload inside a call event's ``metadata`` (shape unverified)."""
    metadata = event.get("metadata")
    if not isinstance(metadata, dict):
        return {}
    for holder in (metadata, metadata.get("event"), metadata.get("data")):
        if isinstance(holder, dict):
            payload = holder.get("payload")
            if isinstance(payload, dict):
                return payload
    return {}


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        doc = response.json()
    except ValueError:
        return []
    errors = doc.get("errors") if isinstance(doc, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _error_title(response: httpx.Response) -> str:
    errors = _errors(response)
    return str(errors[0].get("title", ""))[:200] if errors else ""


def _error_code(response: httpx.Response) -> int | None:
    errors = _errors(response)
    code = errors[0].get("code") if errors else None
    try:
        return int(code) if code is not None else None
    except (TypeError, ValueError):
        return None
