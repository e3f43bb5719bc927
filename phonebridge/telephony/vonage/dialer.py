"""Placing calls with Vonage's Voice API, and reading its call events.

What this relies on (Vonage's Voice API reference and webhook reference, and
the request/response models of the official ``vonage-python-sdk``'s
``vonage_voice`` and ``vonage_jwt`` packages, read, not used):

- **Auth**: ``Authorization: Bearer <JWT>``, RS256 signed with the
  application's private key, claims ``application_id``, ``iat``, ``jti`` and
  ``exp`` (:func:`application_jwt`; the SDK's ``JwtClient`` signs the same
  claims with a 15 min expiry, we sign each request with a short one).
- **Create**: ``POST /v1/calls`` with JSON ``to: [{"type": "phone", "number"}]``,
  ``from: {"type": "phone", "number"}`` (numbers without ``+``),
  ``answer_url: [url]`` + ``answer_method``, ``event_url: [url]`` +
  ``event_method``, ``ringing_timer`` (1..120 s) and
  ``advanced_machine_detection: {behavior, mode, beep_timeout}``; 201 with
  ``uuid``, ``status``, ``direction``, ``conversation_uuid``.
- **Answering machines**: advanced machine detection in mode ``default`` is
  the *asynchronous* one (the NCCO runs at once, so a person hears the
  persona without a detection delay; ``detect``/``detect_beep`` hold the NCCO
  until detection is over). Its verdict is an event with ``status``
  ``human`` or ``machine``; the beep is a further ``machine`` event with
  ``sub_state: beep_start`` (``beep_timeout`` when no beep came within
  ``beep_timeout`` seconds, 45..120). ``behavior: continue``: Vonage never
  hangs up by itself, the bridge decides (voicemail or hang-up) so the call
  row says why the call ended.
- **Events**: ``status`` ``started``, ``ringing``, ``answered``,
  ``completed``, ``busy``, ``cancelled``, ``failed``, ``rejected``,
  ``timeout``, ``unanswered`` (:func:`call_status`).
- **Read**: ``GET /v1/calls/{uuid}``; ``GET /v1/calls`` with ``date_start``
  (ISO 8601), ``page_size`` (≤ 100), ``record_index`` and ``order``, HAL
  pages (``_embedded.calls``, ``_links.next``). It has no filter by number and
  no tag of ours, so :meth:`VonageDialer.find` pages through the account's
  calls of the window and filters by ``to``/``from`` itself.
- **Hang up**: ``PUT /v1/calls/{uuid}`` with ``{"action": "hangup"}``.

Why ``httpx`` and not the SDK: five requests whose bodies are a few keys; the
SDK is blocking (a thread per request), and would bring ``vonage-utils``,
``vonage-http-client`` and pinned pydantic models for them, while PyJWT and
``cryptography`` (RS256) are already dependencies.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from phonebridge.outbound.carrier import (
    CallStatus,
    CarrierCall,
    CarrierError,
    DialRequest,
    MachineVerdict,
)
from phonebridge.telephony.vonage.protocol import e164

DEFAULT_API_URL: Final = "https://api.nexmo.com"
TOKEN_SECONDS: Final = 300
"""A request's JWT lives this long (Vonage's own SDK uses 15 min; ours are signed per request)."""
PAGE_SIZE: Final = 100  # the largest page GET /v1/calls serves
MAX_PAGES: Final = 50
"""``find`` gives up (an error, not an empty answer) past this many pages: a
window that holds over 5,000 calls is not listed whole, and releasing a claim
on a partial list could ring the callee twice."""
RING_SECONDS_RANGE: Final = (1, 120)  # ringing_timer's documented range
BEEP_TIMEOUT_SECONDS: Final = 45
"""How long Vonage listens for the greeting's beep (the smallest allowed, 45..120): past
it a ``beep_timeout`` event comes and the voicemail is left anyway."""

_STATUSES: Final[Mapping[str, CallStatus]] = {
    "started": "queued",
    "ringing": "ringing",
    "answered": "in-progress",
    # A call record's state while detection runs (GET /v1/calls lists it as a state).
    "machine": "in-progress",
    "human": "in-progress",
    "completed": "completed",
    "busy": "busy",
    # The destination declined it: what Twilio reports as busy (and Vonage warns
    # that carriers relay busy as rejected); a campaign retries it like busy.
    "rejected": "busy",
    "timeout": "no-answer",  # not answered within ringing_timer
    "unanswered": "no-answer",
    "failed": "failed",
    "cancelled": "canceled",
}
AMD_STATUSES: Final = frozenset({"human", "machine"})
_MESSAGE_END: Final = frozenset({"beep_start", "beep_timeout"})


def call_status(status: str) -> CallStatus | None:
    """Vonage's call ``status`` in the outbound service's words; None if unknown."""
    return _STATUSES.get(status)


def machine_verdict(status: str, sub_state: str = "") -> MachineVerdict:
    """An advanced machine detection event: ``human``; ``machine`` (the greeting is
    playing); ``machine`` with ``sub_state`` ``beep_start`` (the beep: a voicemail
    starts now) or ``beep_timeout`` (no beep came: the greeting is long over)."""
    if status == "human":
        return "human"
    if status == "machine":
        return "message_end" if sub_state in _MESSAGE_END else "machine"
    return "unknown"


def answered_by(status: str, sub_state: str = "") -> str:
    """The word kept on the attempt: ``human``, ``machine``, ``machine:beep_start`` …"""
    return f"{status}:{sub_state}" if sub_state else status


def application_jwt(application_id: str, private_key: str, now: float, *, jti: str) -> str:
    """The Bearer token of a Voice API request (RS256 with the application's key)."""
    claims = {
        "application_id": application_id,
        "iat": int(now),
        "jti": jti,
        "exp": int(now) + TOKEN_SECONDS,
    }
    return jwt.encode(claims, private_key, algorithm="RS256")


def private_key_problem(pem: str) -> str | None:
    """Why ``pem`` cannot sign RS256 tokens (one line), or None: checked at start-up so a
    broken key fails there and not on the first call placed."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return f"not a PEM private key without a passphrase ({type(exc).__name__})"
    if not isinstance(key, rsa.RSAPrivateKey):
        return "not an RSA private key (Vonage signs RS256)"
    return None


def _number(endpoint: object) -> str:
    if isinstance(endpoint, dict) and isinstance(endpoint.get("number"), str):
        return e164(endpoint["number"])
    return ""


class VonageDialer:
    """Places calls with Vonage's Voice API (``/v1/calls``)."""

    name = "vonage"
    label = "Vonage"
    leaves_voicemail = True

    def __init__(
        self,
        application_id: str,
        private_key: str,
        *,
        http: httpx.AsyncClient,
        api_url: str = DEFAULT_API_URL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._application_id = application_id
        self._private_key = private_key
        self._http = http
        self._base = api_url.rstrip("/")
        self._clock = clock

    async def place(self, request: DialRequest) -> CarrierCall:
        lowest, highest = RING_SECONDS_RANGE
        detection: dict[str, Any] = {"behavior": "continue", "mode": "default"}
        if request.machine == "voicemail":
            detection["beep_timeout"] = BEEP_TIMEOUT_SECONDS
        body = {
            "to": [{"type": "phone", "number": request.to.lstrip("+")}],
            "from": {"type": "phone", "number": request.from_.lstrip("+")},
            "answer_url": [request.callback_url("answer")],
            "answer_method": "GET",
            "event_url": [request.callback_url("event")],
            "event_method": "POST",
            "ringing_timer": min(max(request.ring_seconds, lowest), highest),
            "advanced_machine_detection": detection,
        }
        doc = await self._request("POST", "/v1/calls", json=body)
        call_uuid = doc.get("uuid")
        if not isinstance(call_uuid, str) or not call_uuid:
            raise CarrierError(f"{self.label} API: the created call has no uuid")
        return CarrierCall(
            sid=call_uuid,
            status=call_status(str(doc.get("status", ""))) or "queued",
            to=request.to,
            from_=request.from_,
        )

    async def fetch(self, call_sid: str) -> CarrierCall | None:
        try:
            return self._call(await self._request("GET", f"/v1/calls/{call_sid}"))
        except CarrierError as exc:
            if exc.status == 404:
                return None
            raise

    async def find(
        self, *, attempt_id: str, to: str, from_: str, since: datetime
    ) -> Sequence[CarrierCall]:
        # Vonage keeps no tag of ours on a call and its list filters by time only:
        # every page of the window is read and matched by number here. Complete for
        # the window, or an error (never a partial answer, which would release a
        # claim whose call exists).
        start = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        found: list[CarrierCall] = []
        index = 0
        for _ in range(MAX_PAGES):
            params = {
                "date_start": start,
                "page_size": str(PAGE_SIZE),
                "record_index": str(index),
                "order": "asc",
            }
            doc = await self._request("GET", "/v1/calls", params=params)
            embedded = doc.get("_embedded")
            calls = embedded.get("calls") if isinstance(embedded, dict) else None
            if not isinstance(calls, list):
                calls = []
            for record in calls:
                if not isinstance(record, dict):
                    continue
                if _number(record.get("to")) == to and _number(record.get("from")) == from_:
                    found.append(self._call(record))
            following = _next_index(doc)
            if following is None or not calls:
                return found
            if following <= index:
                raise CarrierError(f"{self.label} API: the call list's next page goes back")
            index = following
        raise CarrierError(
            f"{self.label} API: more than {MAX_PAGES * PAGE_SIZE} calls since {start}; "
            "the window was not listed whole"
        )

    async def hang_up(self, call_sid: str) -> None:
        try:
            await self._request("PUT", f"/v1/calls/{call_sid}", json={"action": "hangup"})
        except CarrierError as exc:
            if exc.status != 404:
                raise

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        now = self._clock()
        token = application_jwt(self._application_id, self._private_key, now, jti=str(uuid.uuid4()))
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        try:
            response = await self._http.request(
                method, self._base + path, headers=headers, **kwargs
            )
        except httpx.HTTPError as exc:
            raise CarrierError(f"{self.label} API {method} {path} failed: {exc!r}") from exc
        if response.status_code >= 300:
            raise CarrierError(
                f"{self.label} API {method} {path}: HTTP {response.status_code} "
                f"{_problem(response)}",
                status=response.status_code,
            )
        if response.status_code == 204 or not response.content:
            return {}
        try:
            doc = response.json()
        except ValueError as exc:
            raise CarrierError(f"{self.label} API {method} {path}: body is not JSON") from exc
        if not isinstance(doc, dict):
            raise CarrierError(f"{self.label} API {method} {path}: body is not a JSON object")
        return doc

    def _call(self, record: Mapping[str, Any]) -> CarrierCall:
        raw = str(record.get("status", ""))
        status = call_status(raw)
        if status is None:
            raise CarrierError(f"{self.label} API: unknown call status {raw!r}")
        call_uuid = record.get("uuid")
        if not isinstance(call_uuid, str) or not call_uuid:
            raise CarrierError(f"{self.label} API: a call record without a uuid")
        return CarrierCall(
            sid=call_uuid,
            status=status,
            to=_number(record.get("to")),
            from_=_number(record.get("from")),
        )


def _next_index(doc: Mapping[str, Any]) -> int | None:
    """The ``record_index`` of the ``_links.next`` page; None on the last page."""
    links = doc.get("_links")
    following = links.get("next") if isinstance(links, dict) else None
    href = following.get("href") if isinstance(following, dict) else None
    if not isinstance(href, str):
        return None
    values = parse_qs(urlsplit(href).query).get("record_index")
    if not values or not values[0].isdigit():
        raise CarrierError(f"Vonage API: a next page without a record_index: {href[:120]!r}")
    return int(values[0])


def _problem(response: httpx.Response) -> str:
    """Vonage's error body (RFC 7807: ``title``, ``detail``), shortened."""
    try:
        doc = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(doc, dict):
        parts = [str(doc[key]) for key in ("title", "detail") if doc.get(key)]
        return ": ".join(parts)[:200]
    return ""
