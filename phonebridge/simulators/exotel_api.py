"""TEST DOUBLE: Exotel's Connect Voice AI and call details APIs on loopback, with callees.

What phonebridge uses of Exotel's v1 voice API, as developer.exotel.com
documents it (telephony/exotel/dialer.py cites the pages), HTTP Basic API key
: API token:

- ``POST /v1/Accounts/{sid}/Calls/connect.json``: form ``From`` (the callee),
  ``CallerId``, ``StreamUrl`` (``ws(s)://``, ≤ 600 chars), ``StreamType``
  (``bidirectional``), ``TimeLimit`` (≤ 14 400), ``TimeOut``, ``CustomField``
  (≤ 128), ``StatusCallback``, ``StatusCallbackEvents[]`` (``answered``,
  ``terminal``), ``StreamName`` (≤ 32); answers ``{"Call": {…}}``;
- ``GET /v1/Accounts/{sid}/Calls/{Sid}.json``: ``{"Call": {…}}`` or 404;
- ``GET /v1/Accounts/{sid}/Calls.json``: the bulk list filtered by ``From``,
  ``To`` and ``DateCreated`` (``gte:…;lte:…``, India time), ``PageSize``,
  paged by ``After`` (``Metadata.NextPageUri``); like Exotel's, it **omits
  ongoing calls**.

Each call rings its :class:`~phonebridge.simulators.twilio_api.Callee`; busy,
no-answer and failed end with that terminal StatusCallback. An answered call
posts the ``answered`` event, then opens the ``StreamUrl`` with the Exotel
phone simulator (:class:`~.phone.carriers.exotel.ExotelConnectFlavour`): a
person talks (and presses keys), an answering machine plays its greeting and
a beep and records for ``machine_record`` seconds (Exotel detects nothing).
When the stream ends, from either side, the call is over: ``terminal`` with
``completed``. Callbacks are unsigned (Exotel signs nothing): the callback
URL's userinfo is sent as ``Authorization: Basic``, as for the stream.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from phonebridge.simulators.fake_api import BEEP, Callee, LoopbackFakeApi, callee_phone
from phonebridge.simulators.phone.carriers.exotel import ExotelConnectFlavour
from phonebridge.simulators.phone.report import DialReport
from phonebridge.telephony.exotel.auth import basic_header

IST = timezone(timedelta(hours=5, minutes=30))
TERMINAL = ("completed", "busy", "no-answer", "failed")


def _ist(moment: datetime) -> str:
    return moment.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(slots=True)
class ExotelCall:
    sid: str
    to: str  # the callee (Exotel's From)
    caller_id: str
    form: dict[str, str]
    events: tuple[str, ...]
    callee: Callee
    created: datetime
    status: str = "queued"
    report: DialReport | None = None
    callbacks: list[tuple[dict[str, str], int | None]] = field(default_factory=list)

    def json(self, account: str) -> dict[str, Any]:
        return {
            "Sid": self.sid,
            "ParentCallSid": None,
            "DateCreated": _ist(self.created),
            "DateUpdated": _ist(self.created),
            "AccountSid": account,
            "To": self.caller_id,
            "From": self.to,
            "PhoneNumberSid": self.caller_id,
            "Status": self.status,
            "Direction": "outbound-api",
            "AnsweredBy": None,
            "Uri": f"/v1/Accounts/{account}/Calls/{self.sid}.json",
        }


class FakeExotelApi(LoopbackFakeApi[ExotelCall]):
    """``async with FakeExotelApi(...) as api:`` ``api.url`` is the API base URL."""

    def __init__(
        self,
        *,
        account_sid: str,
        api_key: str,
        api_token: str,
        bridge_public_url: str,
        bridge_local_url: str,
        callees: dict[str, Callee] | None = None,
        machine_record: float = 1.5,
    ) -> None:
        super().__init__(
            bridge_public_url=bridge_public_url, bridge_local_url=bridge_local_url, callees=callees
        )
        self.account = account_sid
        self.key = api_key
        self.token = api_token
        self.machine_record = machine_record
        self.page_size_cap = 100  # Exotel's PageSize maximum (tests lower it to page)

    # -- HTTP -----------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        return request.headers.get("authorization") == basic_header(self.key, self.token)

    @staticmethod
    def _error(status: int, message: str) -> JSONResponse:
        return JSONResponse(
            {"RestException": {"Status": status, "Message": message}}, status_code=status
        )

    def _check(self, request: Request) -> JSONResponse | None:
        self.note(request)
        if not self._authorised(request):
            return self._error(401, "Authentication is required")
        if request.path_params["account"] != self.account:
            return self._error(404, "no such account")
        return None

    async def _connect(self, request: Request) -> Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        raw = await request.form()
        form = {k: str(v) for k, v in raw.items()}
        events = tuple(str(v) for v in raw.getlist("StatusCallbackEvents[]"))
        for name in ("From", "CallerId", "StreamUrl", "StreamType"):
            if not form.get(name):
                return self._error(400, f"{name} is required")
        stream = form["StreamUrl"]
        if urlsplit(stream).scheme not in ("ws", "wss") or len(stream) > 600:
            return self._error(400, "StreamUrl must be ws(s):// and at most 600 characters")
        if form["StreamType"] != "bidirectional":
            return self._error(400, "StreamType must be bidirectional for a voicebot")
        if len(form.get("CustomField", "")) > 128 or len(form.get("StreamName", "")) > 32:
            return self._error(400, "CustomField or StreamName too long")
        if not 0 < int(form.get("TimeLimit", "14400")) <= 14_400:
            return self._error(400, "TimeLimit must be 1..14400")
        sid = secrets.token_hex(16)
        call = ExotelCall(
            sid=sid,
            to=form["From"],
            caller_id=form["CallerId"],
            form=form,
            events=events,
            callee=self.callee(form["From"]),
            created=datetime.now(UTC),
        )
        self.start_call(sid, call, self._run(call))
        return JSONResponse({"Call": call.json(self.account)})

    async def _call(self, request: Request) -> Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        call = self.calls.get(request.path_params["sid"])
        if call is None:
            return self._error(404, "not found")
        return JSONResponse({"Call": call.json(self.account)})

    async def _list(self, request: Request) -> Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        query = request.query_params
        low = high = None
        for part in query.get("DateCreated", "").split(";"):
            op, _, value = part.partition(":")
            if value:
                moment = datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=IST)
                low, high = (moment, high) if op == "gte" else (low, moment)
        froms = set(query["From"].split(",")) if query.get("From") else None
        found = [
            c
            for c in sorted(self.calls.values(), key=lambda c: c.created)
            if c.status in TERMINAL  # Exotel: "will not provide ongoing calls' details"
            and (froms is None or c.to in froms)
            and (low is None or c.created.replace(microsecond=0) >= low)
            and (high is None or c.created.replace(microsecond=0) <= high)
        ]
        after = int(query.get("After", "0") or "0")
        size = min(int(query.get("PageSize", "50")), self.page_size_cap)
        page = found[after : after + size]
        more = after + size < len(found)
        params = {k: v for k, v in query.items() if k != "After"}
        next_uri = (
            f"{request.url.path}?{urlencode({**params, 'After': str(after + size)})}"
            if more
            else None
        )
        return JSONResponse(
            {
                "Metadata": {"PageSize": size, "NextPageUri": next_uri, "PrevPageUri": None},
                "Calls": [c.json(self.account) for c in page],
            }
        )

    # -- the call -------------------------------------------------------------

    async def _callback(self, call: ExotelCall, event: str) -> None:
        url = call.form.get("StatusCallback")
        if not url or event not in call.events:
            return
        params = {
            "CallSid": call.sid,
            "EventType": event,
            "Status": call.status,
            "DateCreated": _ist(call.created),
            "DateUpdated": _ist(datetime.now(UTC)),
            "From": call.to,
            "To": call.caller_id,
            "Direction": "outbound-api",
            "CustomField": call.form.get("CustomField", ""),
            "RecordingUrl": "",
        }
        parts = urlsplit(url)
        headers = {}
        if parts.username:
            headers["Authorization"] = basic_header(
                unquote(parts.username), unquote(parts.password or "")
            )
        bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        call.callbacks.append((params, await self.callback(bare, headers, data=params)))

    async def _run(self, call: ExotelCall) -> None:
        callee = call.callee
        call.status = "ringing"
        await asyncio.sleep(callee.ring)
        if callee.kind in ("no-answer", "busy", "failed"):
            call.status = callee.kind
            await self._callback(call, "terminal")
            return
        call.status = "in-progress"
        await self._callback(call, "answered")
        try:
            call.report = await self._stream(call)
        finally:
            call.status = "completed"
        await self._callback(call, "terminal")

    async def _stream(self, call: ExotelCall) -> DialReport:
        flavour = ExotelConnectFlavour(
            call.form["StreamUrl"], call_sid=call.sid, account_sid=self.account
        )
        report = DialReport(
            call_sid=call.sid,
            account_sid=self.account,
            stream_sid="",
            to=call.to,
            from_=call.caller_id,
            carrier="exotel",
        )
        # A machine records for machine_record seconds after its beep, then hangs up.
        recording = BEEP + self.machine_record
        phone = callee_phone(flavour, call.callee, self.routes, report, machine_records=recording)
        return await phone.run()

    # -- lifetime -------------------------------------------------------------

    def routes_served(self) -> list[BaseRoute]:
        prefix = "/v1/Accounts/{account}"
        return [
            Route(prefix + "/Calls/connect.json", self._connect, methods=["POST"]),
            Route(prefix + "/Calls.json", self._list, methods=["GET"]),
            Route(prefix + "/Calls/{sid}.json", self._call, methods=["GET"]),
        ]
