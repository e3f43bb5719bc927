"""Placing calls with Exotel's Connect Voice AI API, and reading its words.

Sources (developer.exotel.com, read 2025; field names as documented there):

- *Connect Voice AI API* (docs/agentstream/connect-voice-ai): ``POST
  {api}/v1/Accounts/{sid}/Calls/connect`` (``.json`` for a JSON answer), HTTP
  Basic API key : API token, form ``From`` (the number to dial), ``CallerId``
  (the ExoPhone), ``StreamUrl`` (``ws(s)://``, at most 600 characters),
  ``StreamType=bidirectional``, ``TimeLimit`` (at most 14 400 s),
  ``CustomField`` (at most 128 characters), ``StatusCallback``,
  ``StatusCallbackEvents[]`` (``answered``, ``terminal``), ``StreamName``
  (at most 32). One page of the same docs spells them in lower case; we send
  Exotel's CamelCase, as its examples and API console do.
- *StatusCallback* (docs/voice-v1/api-reference/status-callback): a POST with
  ``CallSid``, ``Status`` (``completed``, ``failed``, ``busy``,
  ``no-answer``), and with ``StatusCallbackEvents`` also ``EventType``
  (``answered``, ``terminal``), ``CustomField``, ``From``, ``To`` … Exotel
  signs nothing (CARRIERS.md §5.5): the callback URL carries the Basic
  credentials of the media socket (``https://user:password@…``) and the
  routes check them, or the IP allow-list, as for inbound requests.
- *Call details* (docs/voice-v1/api-reference/call-details): ``GET
  Calls/{Sid}.json`` (``{"Call": {"Sid", "Status", "From", "To", …}}``) and
  the bulk ``GET Calls.json`` filtered by ``From``, ``To``, ``DateCreated``
  (``gte:YYYY-MM-DD HH:mm:ss;lte:…``), ``PageSize`` (max 100), paged by
  ``Metadata.NextPageUri``. It **does not list ongoing calls**.

What Exotel cannot do, and what we do about it:

- **No answering-machine detection** is documented for this API (nor any
  ``AnsweredBy`` verdict on its callbacks). A persona with ``on_machine:
  voicemail`` is refused before anything is claimed (``leaves_voicemail`` is
  False: the outbound service answers 409, a campaign pauses; ``place`` refuses
  it too, as a 4xx-like :class:`CarrierError`, should it be asked): its message
  could never be left after the beep, and talking at a greeting instead is not
  what its author asked for. Any other persona runs every answered call as a
  person's, the attempt's ``answered_by`` recorded as ``unknown``.
- **No answer document and no after-stream step**: the stream connecting is
  the answer, and with no flow around it the call ends when our socket
  closes (unverified against a live account: the docs say only that closing
  the socket ends the applet). Voicemail and the opt-out goodbye cannot be
  spoken (Exotel has no TTS of its own); the opt-out still lands on the
  do-not-call list and the call is hung up.
- **No in-call REST hang-up** is documented: :meth:`ExotelDialer.hang_up`
  refuses (the service asks for it only on an AMD verdict, which Exotel
  never gives).
- **Recovery** (:meth:`ExotelDialer.find`): the bulk list is the only lookup
  and omits ongoing calls, so an empty answer proves nothing while the lost
  call could still be live: until :data:`TIME_LIMIT` (which we set, so no
  call outlives it) plus the longest ring has passed since the claim,
  ``find`` raises instead of answering "nobody was dialled", and the claim
  stays for the next reconcile pass. ``DateCreated`` is read and written as
  India time (IST; the docs' examples carry no zone: *unverified*).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Final, get_args
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx

from phonebridge.outbound.carrier import (
    CallStatus,
    CarrierCall,
    CarrierError,
    DialRequest,
)
from phonebridge.telephony.stream import RATES

IST: Final = timezone(timedelta(hours=5, minutes=30), "IST")
TIME_LIMIT: Final = 3_600
"""Seconds an Exotel call may last (``TimeLimit``; Exotel's stream session cap is
60 min): a backstop to our own limits, and the bound recovery relies on."""
MAX_RING: Final = 600  # PHONEBRIDGE_OUTBOUND_RING_SECONDS's upper bound
MAX_STREAM_URL: Final = 600
MAX_CUSTOM_FIELD: Final = 128
STREAM_NAME: Final = "phonebridge"
PAGE_SIZE: Final = 100
MAX_PAGES: Final = 20

_STATUSES: frozenset[str] = frozenset(get_args(CallStatus))
_WORDS: Mapping[str, CallStatus] = {
    "no_answer": "no-answer",
    "noanswer": "no-answer",
    "cancelled": "canceled",
    "in_progress": "in-progress",
}


def call_status(status: str, event_type: str = "") -> CallStatus | None:
    """Exotel's ``Status`` (and ``EventType`` of a StatusCallback) in our words;
    None if unknown. An ``answered`` event is the call in progress whatever its
    ``Status`` says (the docs list only terminal statuses for the callback)."""
    if event_type.strip().lower() == "answered":
        return "in-progress"
    word = status.strip().lower()
    if word in _STATUSES:
        return word  # type: ignore[return-value]
    return _WORDS.get(word)


def stream_url(
    callback_url: str, *, sample_rate: int, attempt_id: str, user: str, password: str
) -> str:
    """The ``StreamUrl``: our ``https`` callback URL for ``media`` as ``wss``, with
    ``sample-rate`` and the attempt (a custom parameter, echoed in ``start``),
    the Basic credentials as userinfo (Exotel sends them on the upgrade)."""
    parts = urlsplit(callback_url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise CarrierError(f"Exotel stream URL from {callback_url!r}: not http(s)", status=400)
    if sample_rate not in RATES:
        raise CarrierError(f"Exotel streams at {RATES} Hz, not {sample_rate}", status=400)
    query = urlencode({"sample-rate": str(sample_rate), "attempt": attempt_id})
    url = urlunsplit((scheme, with_userinfo(parts.netloc, user, password), parts.path, query, ""))
    if len(url) > MAX_STREAM_URL:
        raise CarrierError(f"Exotel StreamUrl of {len(url)} chars (max 600)", status=400)
    return url


def with_userinfo(netloc: str, user: str, password: str) -> str:
    host = netloc.rpartition("@")[2]
    if not user:
        return host
    return f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"


def callback_with_credentials(url: str, user: str, password: str) -> str:
    """A StatusCallback URL carrying the Basic credentials the routes check."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=with_userinfo(parts.netloc, user, password)))


def exotel_time(moment: datetime) -> str:
    """``YYYY-MM-DD HH:mm:ss`` in India time, as Exotel writes ``DateCreated``."""
    return moment.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")


class ExotelDialer:
    """Places calls with Exotel's ``Calls/connect`` straight into a bidirectional stream."""

    name = "exotel"
    label = "Exotel"
    leaves_voicemail = False  # no answering-machine detection on Connect Voice AI

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        account_sid: str,
        api_key: str,
        api_token: str,
        api_url: str,
        basic_user: str,
        basic_password: str,
        wall_clock: Callable[[], datetime],
    ) -> None:
        self._http = http
        self._base = f"{api_url.rstrip('/')}/v1/Accounts/{quote(account_sid, safe='')}"
        self._root = api_url.rstrip("/")
        self._auth = (api_key, api_token)
        self._user = basic_user
        self._password = basic_password
        self._wall = wall_clock

    async def place(self, request: DialRequest) -> CarrierCall:
        if request.machine == "voicemail":
            raise CarrierError(
                "Exotel has no answering-machine detection: a persona with on_machine: "
                "voicemail cannot dial through Exotel (its message could not be left "
                "after the beep)",
                status=422,
            )
        if len(request.attempt_id) > MAX_CUSTOM_FIELD:
            raise CarrierError("attempt id longer than Exotel's CustomField", status=400)
        media = stream_url(
            request.callback_url("media"),
            sample_rate=request.sample_rate,
            attempt_id=request.attempt_id,
            user=self._user,
            password=self._password,
        )
        form: dict[str, str | list[str]] = {
            "From": request.to,
            "CallerId": request.from_,
            "StreamUrl": media,
            "StreamType": "bidirectional",
            "StreamName": STREAM_NAME,
            "TimeLimit": str(TIME_LIMIT),
            # Documented for Calls/connect (how long the first leg rings); the Connect
            # Voice AI page does not list it: unverified that it applies there.
            "TimeOut": str(request.ring_seconds),
            "CustomField": request.attempt_id,
            "StatusCallback": callback_with_credentials(
                request.callback_url("status"), self._user, self._password
            ),
            "StatusCallbackEvents[]": ["answered", "terminal"],
        }
        doc = await self._request("POST", f"{self._base}/Calls/connect.json", data=form)
        call = self._call(doc)
        if call is None:
            raise CarrierError("Exotel API: Calls/connect answered without a Call")
        return call

    async def fetch(self, call_sid: str) -> CarrierCall | None:
        try:
            doc = await self._request("GET", f"{self._base}/Calls/{quote(call_sid, safe='')}.json")
        except CarrierError as exc:
            if exc.status == 404:
                return None
            raise
        return self._call(doc)

    async def find(
        self, *, attempt_id: str, to: str, from_: str, since: datetime
    ) -> Sequence[CarrierCall]:
        now = self._wall()
        params: dict[str, str] | None = {
            "From": to,  # Exotel's From is the number dialled first: our callee
            "DateCreated": f"gte:{exotel_time(since)};lte:{exotel_time(now)}",
            "PageSize": str(PAGE_SIZE),
            "SortBy": "DateCreated:asc",
        }
        url = f"{self._base}/Calls.json"
        found: list[CarrierCall] = []
        for _ in range(MAX_PAGES):
            doc = await self._request("GET", url, params=params)
            for item in doc.get("Calls") or []:
                call = self._one(item) if isinstance(item, dict) else None
                if call is not None and item.get("CustomField") in (None, "", attempt_id):
                    found.append(call)
            meta = doc.get("Metadata")
            next_uri = meta.get("NextPageUri") if isinstance(meta, dict) else None
            if not isinstance(next_uri, str) or not next_uri:
                break
            url, params = (next_uri if next_uri.startswith("http") else self._root + next_uri), None
        else:
            raise CarrierError(f"Exotel API: more than {MAX_PAGES} pages of calls to list")
        if not found and now - since < timedelta(seconds=TIME_LIMIT + MAX_RING + 120):
            # The list omits ongoing calls: "none" is proof only once no call
            # placed since then can still be ringing or live.
            raise CarrierError(
                "Exotel lists no call yet; the lost one may still be live (Exotel's list "
                "omits ongoing calls): looked up again later"
            )
        return found

    async def hang_up(self, call_sid: str) -> None:
        raise CarrierError(f"Exotel documents no REST hang-up (call {call_sid})")

    async def _request(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        where = url.split("?", maxsplit=1)[0].replace(self._root, "")
        try:
            response = await self._http.request(method, url, auth=self._auth, **kwargs)
        except httpx.HTTPError as exc:
            raise CarrierError(f"Exotel API {method} {where} failed: {exc!r}") from exc
        if response.status_code >= 300:
            raise CarrierError(
                f"Exotel API {method} {where}: HTTP {response.status_code} {_message(response)}",
                status=response.status_code,
            )
        try:
            doc = response.json()
        except ValueError as exc:
            raise CarrierError(f"Exotel API {method} {where}: not JSON") from exc
        if not isinstance(doc, dict):
            raise CarrierError(f"Exotel API {method} {where}: not a JSON object")
        return doc

    def _call(self, doc: Mapping[str, Any]) -> CarrierCall | None:
        call = doc.get("Call")
        return self._one(call) if isinstance(call, dict) else None

    def _one(self, call: Mapping[str, Any]) -> CarrierCall:
        sid, status_text = call.get("Sid"), call.get("Status")
        status = call_status(str(status_text or ""))
        if not isinstance(sid, str) or not sid or status is None:
            raise CarrierError(
                f"Exotel API: a call without Sid or a known Status ({status_text!r})"
            )
        return CarrierCall(
            sid=sid,
            status=status,
            to=str(call.get("From") or ""),  # the callee: dialled first
            from_=str(call.get("PhoneNumberSid") or call.get("To") or ""),
            answered_by=None,
        )


def _message(response: httpx.Response) -> str:
    """Exotel's ``RestException.Message`` when there is one (bounded)."""
    try:
        doc = response.json()
    except ValueError:
        return response.text[:200]
    error = doc.get("RestException") if isinstance(doc, dict) else None
    message = error.get("Message") if isinstance(error, dict) else None
    return str(message)[:200] if message else response.text[:200]
