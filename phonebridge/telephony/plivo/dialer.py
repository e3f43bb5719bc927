"""Placing calls with Plivo's Call API, and reading its call callbacks.

What it relies on (Plivo's docs, checked against the ``plivo`` Python SDK 4.x,
``plivo/resources/calls.py``; no SDK code is used):

- **Make a call**: ``POST {PLIVO_API_URL}/v1/Account/{auth_id}/Call/`` (Basic
  ``auth_id:auth_token``, a JSON body as the SDK sends it) with ``from``, ``to``
  (numbers as digits with the country code, Plivo's examples write no ``+``),
  ``answer_url`` + ``answer_method``, ``ring_url``, ``hangup_url`` (+ their
  ``_method``), ``ring_timeout`` (seconds), ``machine_detection`` (``true`` or
  ``hangup``) and ``machine_detection_url``/``_method`` (asynchronous
  detection: the call is answered at once and the verdict is POSTed later).
  The answer is ``{"message": "call fired", "request_uuid": …}``.
- **One id.** The create answer gives only ``request_uuid``; the callbacks carry
  ``CallUUID`` (and ``RequestUUID``/``ALegRequestUUID``). Plivo's SDK team states
  that for a call to one destination the request UUID *is* the call UUID
  (plivo/plivo-python issue #44: "The request_uuid is the call_uuid"), and the
  Hangup API cancels a queued call by that same id. So the attempt keeps that
  one uuid: its carrier id for every REST request (hang-up, the fallback
  transfer of ``web/carriers/plivo.py``/``carrier_rest.PlivoApi``, fetch), and
  our row SID is ``bridge_call_sid("plivo", uuid)`` — which is also what the
  media stream's ``start.callId`` claims, so the answered call's reservation
  and its stream meet. The callback routes take ``CallUUID`` (what the stream
  and REST control use); should Plivo ever send a different one, the
  attempt's recorded id follows the callbacks when it settles.
- **Statuses** (``CallStatus`` on the hangup URL; Plivo's support article
  "What do the different call statuses mean"): ``completed``, ``busy``,
  ``no-answer``, ``failed``, ``cancel`` (spelt without the "ed"), ``timeout``
  ("a timeout while connecting your call"), and ``ringing``/``in-progress``
  before. ``timeout`` becomes ``no-answer``: nobody was reached and the
  attempt is worth retrying, which is what a campaign does with no-answer.
- **Machines**: Plivo's machine detection reports only *that* a machine
  answered (``Machine=true`` on ``machine_detection_url``, soon after the
  answer); it has no greeting-end or beep verdict. What a voicemail persona
  needs is left to Plivo XML: ``<Wait beep="true">`` (documented "to detect a
  voicemail machine, so an application can leave voicemail messages") before
  the ``<Speak>``. So the machine callback URL says what the persona asked
  (``machine/voicemail`` or ``machine/hangup``): for ``voicemail`` a machine is
  reported to the service as ``message_end`` (start the voicemail now: the
  document waits for the beep itself), for ``hangup`` as ``machine``.
  ``machine_detection=hangup`` (Plivo hangs up itself) is not used: its
  hang-up races our machine callback, so the row could say ``answered``
  instead of ``machine_hangup``; the bridge hangs up instead, like Twilio.
- **Finding a lost call** (:meth:`PlivoDialer.find`): Plivo keeps no tag of
  ours on a call that its listings show (the answer URL with ``?attempt=`` is
  not in them), so the lookup is by To/From, like Twilio's, over the three
  places a call can be: queued requests (``GET …/Call/?status=queued``, then
  ``Request/{uuid}/``), live calls (``GET …/Call/?status=live``, then
  ``Call/{uuid}/?status=live``) and call detail records (``GET …/Call/`` with
  ``to_number``, ``from_number``, ``call_direction=outbound``,
  ``end_time__gte``; 20 a page). The gap: a call that has just ended may be
  neither live nor yet in the records for the few seconds Plivo takes to
  write its CDR; recovery looks only at claims 30 s old, well past that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, get_args

import httpx

from phonebridge.outbound.carrier import (
    CallStatus,
    CarrierCall,
    CarrierError,
    DialRequest,
    MachineDetection,
    MachineVerdict,
)

_STATUSES: frozenset[str] = frozenset(get_args(CallStatus))
_ALIASES: Final[Mapping[str, CallStatus]] = {
    "cancel": "canceled",
    "cancelled": "canceled",
    "timeout": "no-answer",
    "early media": "ringing",
}
MAX_PAGES: Final = 10  # 200 records of one callee and caller ID in a recovery window


def call_status(value: str) -> CallStatus | None:
    """Plivo's ``CallStatus`` in the service's words; None if unknown."""
    word = value.strip().lower()
    if word in _ALIASES:
        return _ALIASES[word]
    return word if word in _STATUSES else None  # type: ignore[return-value]


def machine_verdict(machine: str, mode: MachineDetection) -> MachineVerdict:
    """Plivo's ``Machine`` (``true``/``false``) for a persona that asked for ``mode``.

    Plivo says only that a machine answered; for a voicemail persona the
    voicemail document itself waits for the beep (``<Wait beep="true">``), so
    the machine is reported as ``message_end``: leave the voicemail now."""
    word = machine.strip().lower()
    if word == "false":
        return "human"
    if word != "true":
        return "unknown"
    return "message_end" if mode == "voicemail" else "machine"


def cdr_status(record: Mapping[str, Any]) -> CallStatus:
    """A call detail record's outcome: answered, else its hangup cause's words
    (Plivo's list of hangup causes: "Busy Line", "No Answer", "Ring Timeout
    Reached", "Canceled"…)."""
    if record.get("answer_time") or str(record.get("call_state", "")).upper() == "ANSWER":
        return "completed"
    cause = str(record.get("hangup_cause_name") or "").lower()
    if "busy" in cause:
        return "busy"
    if "no answer" in cause or "timeout" in cause or "unanswered" in cause:
        return "no-answer"
    if "cancel" in cause:
        return "canceled"
    return "failed"


def _digits(number: str) -> str:
    """Plivo's way of writing a number: digits with the country code, no ``+``."""
    return number.strip().lstrip("+")


def _e164(number: object) -> str:
    text = str(number or "").strip()
    return text if not text or text.startswith(("+", "sip:")) else "+" + text


class PlivoDialer:
    """Places calls with Plivo's Call API over ``httpx``.

    ``http`` is the process's carrier client (closed by its owner).
    """

    name = "plivo"
    label = "Plivo"
    leaves_voicemail = True

    def __init__(
        self, auth_id: str, auth_token: str, *, http: httpx.AsyncClient, api_url: str
    ) -> None:
        self._auth = (auth_id, auth_token)
        self._http = http
        self._base = f"{api_url.rstrip('/')}/v1/Account/{auth_id}"

    async def place(self, request: DialRequest) -> CarrierCall:
        body = {
            "from": _digits(request.from_),
            "to": _digits(request.to),
            "answer_url": request.callback_url("answer"),
            "answer_method": "POST",
            "ring_url": request.callback_url("ring"),
            "ring_method": "POST",
            "hangup_url": request.callback_url("hangup"),
            "hangup_method": "POST",
            "ring_timeout": request.ring_seconds,
            "machine_detection": "true",
            "machine_detection_url": request.callback_url(f"machine/{request.machine}"),
            "machine_detection_method": "POST",
        }
        found = await self._request("POST", "/Call/", json=body)
        uuid = found.get("request_uuid") if isinstance(found, dict) else None
        if isinstance(uuid, list):  # Plivo answers a list for several destinations
            uuid = uuid[0] if len(uuid) == 1 else None
        if not isinstance(uuid, str) or not uuid:
            raise CarrierError(f"Plivo API: create answered without a request_uuid: {found!r:.200}")
        return CarrierCall(uuid, "queued", request.to, request.from_)

    async def fetch(self, call_sid: str) -> CarrierCall | None:
        live = await self._request("GET", f"/Call/{call_sid}/", params={"status": "live"})
        if live is not None:
            return self._live(call_sid, live)
        record = await self._request("GET", f"/Call/{call_sid}/")
        if record is not None:
            return self._record(record)
        queued = await self._request("GET", f"/Request/{call_sid}/")
        if queued is not None:
            return self._queued(call_sid, queued)
        return None

    async def find(
        self, *, attempt_id: str, to: str, from_: str, since: datetime
    ) -> Sequence[CarrierCall]:
        wanted = (_digits(to), _digits(from_))
        found: list[CarrierCall] = []
        for state in ("queued", "live"):
            listing = await self._request("GET", "/Call/", params={"status": state})
            for uuid in _uuids(listing):
                call = (
                    await self._request("GET", f"/Request/{uuid}/")
                    if state == "queued"
                    else await self._request("GET", f"/Call/{uuid}/", params={"status": "live"})
                )
                if call is None:
                    continue  # it moved on between the listing and the lookup
                carrier_call = (
                    self._queued(uuid, call) if state == "queued" else self._live(uuid, call)
                )
                if (_digits(carrier_call.to), _digits(carrier_call.from_)) == wanted:
                    found.append(carrier_call)
        params: dict[str, str | int] = {
            "to_number": wanted[0],
            "from_number": wanted[1],
            "call_direction": "outbound",
            "end_time__gte": since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "limit": 20,
        }
        for page in range(MAX_PAGES):
            params["offset"] = page * 20
            listing = await self._request("GET", "/Call/", params=params)
            objects = listing.get("objects") if isinstance(listing, dict) else None
            if not isinstance(objects, list):
                break
            for record in objects:
                if isinstance(record, dict):
                    call = self._record(record)
                    if (_digits(call.to), _digits(call.from_)) == wanted:
                        found.append(call)
            meta = listing.get("meta") if isinstance(listing, dict) else None
            if not isinstance(meta, dict) or not meta.get("next"):
                break
        return found

    async def hang_up(self, call_sid: str) -> None:
        # DELETE also cancels a call still queued or ringing (Plivo's Hangup API);
        # a call already gone answers 404, which is success here.
        await self._request("DELETE", f"/Call/{call_sid}/")

    # -- HTTP ---------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer (``{}`` when empty); None on 404 (no such call)."""
        url = self._base + path
        try:
            response = await self._http.request(method, url, auth=self._auth, **kwargs)
        except httpx.HTTPError as exc:
            raise CarrierError(f"Plivo API {method} {path}: {exc!r}") from exc
        if response.status_code == 404:
            return None
        if response.status_code >= 300:
            raise CarrierError(
                f"Plivo API {method} {path}: HTTP {response.status_code} {response.text[:200]}",
                status=response.status_code,
            )
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError as exc:
            raise CarrierError(f"Plivo API {method} {path}: answer is not JSON") from exc

    # -- Plivo's records in the service's words ------------------------------------

    def _live(self, uuid: str, call: Mapping[str, Any]) -> CarrierCall:
        status = call_status(str(call.get("call_status", ""))) or "in-progress"
        return CarrierCall(
            str(call.get("call_uuid") or uuid),
            status,
            _e164(call.get("to") or call.get("to_number")),
            _e164(call.get("from") or call.get("from_number")),
        )

    def _queued(self, uuid: str, call: Mapping[str, Any]) -> CarrierCall:
        return CarrierCall(
            str(call.get("request_uuid") or uuid),
            "queued",
            _e164(call.get("to") or call.get("to_number")),
            _e164(call.get("from") or call.get("from_number")),
        )

    def _record(self, record: Mapping[str, Any]) -> CarrierCall:
        uuid = record.get("call_uuid")
        if not isinstance(uuid, str) or not uuid:
            raise CarrierError(f"Plivo API: call record without call_uuid: {record!r:.200}")
        return CarrierCall(
            uuid,
            cdr_status(record),
            _e164(record.get("to_number")),
            _e164(record.get("from_number")),
        )


def _uuids(listing: Any) -> list[str]:
    """``{"calls": [uuid, …]}`` (Plivo's live and queued listings)."""
    calls = listing.get("calls") if isinstance(listing, dict) else None
    return [c for c in calls if isinstance(c, str)] if isinstance(calls, list) else []
