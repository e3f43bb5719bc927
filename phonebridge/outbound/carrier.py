"""Placing calls through a carrier's REST API: the interface, and Twilio's.

:class:`Dialer` is what the outbound service needs from a carrier: place a
call (with answering-machine detection and status callbacks), look a call up
by SID, find the calls to a number since a time (crash recovery resolves a
claim this way), and hang up. A further carrier (telephony/<carrier>/) plugs
in by implementing it.

:class:`TwilioDialer` uses the official ``twilio`` package (Calls resource,
2010-04-01 API): ``calls.create`` with ``machine_detection`` and
``async_amd`` so the call is connected at once and the AMD verdict arrives
later on its own callback. The client is blocking (``requests``): each request
runs in a worker thread. ``api_base_url`` (``TWILIO_API_URL``) replaces
``https://api.twilio.com``; the tests point it at a fake Calls API on loopback.

:class:`SignalWireDialer` is the same client pointed at a SignalWire space:
its Compatibility (LaML) REST API is Twilio's 2010-04-01 Calls resource under
``{space}/api/laml`` with Basic ``project:token``, including ``MachineDetection``
and ``AsyncAmd`` (SignalWire documents both), which is exactly how SignalWire's
own compatibility SDK wraps the ``twilio`` package. Its call ids are UUIDs, so
our SID for the call is :func:`~phonebridge.telephony.carrier_leg.bridge_call_sid`
of it, as for a call SignalWire delivers to us.

:class:`OutboundCarrier` is what the outbound service needs of one carrier that
can dial out: the dialer, our SID for its call ids, and the answer document for
a call it reserved (TwiML for Twilio, cXML for SignalWire), with the leg's rate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from phonebridge.errors import PhonebridgeError
from phonebridge.telephony.carrier_leg import bridge_call_sid

if TYPE_CHECKING:
    from phonebridge.calls.pending import PendingCall

TWILIO_API = "https://api.twilio.com"

TERMINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})

MachineDetection = Literal["hangup", "voicemail"]


class CarrierError(PhonebridgeError):
    """The carrier refused or could not take a request (``status``: HTTP, ``code``: carrier's)."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def definitely_not_placed(self) -> bool:
        """The carrier answered with a refusal (4xx): no call exists. A transport
        error or a 5xx leaves it unknown, to be looked up."""
        return self.status is not None and 400 <= self.status < 500


@dataclass(frozen=True, slots=True)
class DialRequest:
    to: str
    from_: str
    answer_url: str
    status_url: str
    amd_url: str
    ring_seconds: int
    machine: MachineDetection


@dataclass(frozen=True, slots=True)
class CarrierCall:
    sid: str
    status: str  # queued | ringing | in-progress | completed | busy | no-answer | failed | canceled
    to: str
    from_: str
    answered_by: str | None = None


class Dialer(Protocol):
    name: str  # the carrier (config.CARRIERS, or twilio): the call's channel
    label: str  # for messages

    async def place(self, request: DialRequest) -> CarrierCall: ...

    async def fetch(self, call_sid: str) -> CarrierCall | None: ...

    async def find(self, *, to: str, from_: str, since: datetime) -> Sequence[CarrierCall]: ...

    async def hang_up(self, call_sid: str) -> None: ...


class _RebasedHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """The package's own transport, sending to ``base`` instead of api.twilio.com."""

    def __init__(self, base: str) -> None:
        super().__init__(timeout=15)
        self._base = base.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if url.startswith(TWILIO_API):
            url = self._base + url[len(TWILIO_API) :]
        return super().request(method, url, *args, **kwargs)


class TwilioDialer:
    """Places calls with Twilio's Calls resource."""

    name = "twilio"
    label = "Twilio"

    def __init__(self, account_sid: str, auth_token: str, *, api_base_url: str | None = None):
        http = _RebasedHttpClient(api_base_url) if api_base_url else TwilioHttpClient(timeout=15)
        self._client = Client(account_sid, auth_token, http_client=http, environment={})

    async def place(self, request: DialRequest) -> CarrierCall:
        # DetectMessageEnd waits for the greeting's end (the beep) before it calls
        # back, which is when a voicemail should start; Enable calls back as soon
        # as it knows, which is all a hang-up needs.
        detection = "DetectMessageEnd" if request.machine == "voicemail" else "Enable"
        call = await self._run(
            self._client.calls.create,
            to=request.to,
            from_=request.from_,
            url=request.answer_url,
            method="POST",
            status_callback=request.status_url,
            status_callback_method="POST",
            status_callback_event=["initiated", "ringing", "answered", "completed"],
            timeout=request.ring_seconds,
            machine_detection=detection,
            async_amd="true",
            async_amd_status_callback=request.amd_url,
            async_amd_status_callback_method="POST",
        )
        return _call(call)

    async def fetch(self, call_sid: str) -> CarrierCall | None:
        try:
            return _call(await self._run(self._client.calls(call_sid).fetch))
        except CarrierError as exc:
            if exc.status == 404:
                return None
            raise

    async def find(self, *, to: str, from_: str, since: datetime) -> Sequence[CarrierCall]:
        found = await self._run(
            self._client.calls.list, to=to, from_=from_, start_time_after=since, limit=20
        )
        return [_call(c) for c in found]

    async def hang_up(self, call_sid: str) -> None:
        try:
            await self._run(self._client.calls(call_sid).update, status="completed")
        except CarrierError as exc:
            if exc.status != 404:
                raise

    async def _run(self, function: Any, /, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(function, **kwargs)
        except TwilioRestException as exc:
            raise CarrierError(
                f"{self.label} API {exc.method} {exc.uri}: HTTP {exc.status} {exc.msg}",
                status=exc.status,
                code=exc.code,
            ) from exc
        except (TwilioException, requests.RequestException) as exc:
            raise CarrierError(f"{self.label} API request failed: {exc}") from exc


class SignalWireDialer(TwilioDialer):
    """Places calls with SignalWire's Compatibility API (Twilio's Calls resource, LaML)."""

    name = "signalwire"
    label = "SignalWire"

    def __init__(self, project_id: str, api_token: str, *, space_url: str) -> None:
        super().__init__(project_id, api_token, api_base_url=space_url.rstrip("/") + "/api/laml")


@dataclass(frozen=True, slots=True)
class OutboundCarrier:
    """One carrier the bridge can dial out through."""

    dialer: Dialer
    connect: Callable[[PendingCall], str]
    """The answer document for a reserved call (Twilio's TwiML, SignalWire's cXML)."""
    rate: int | None = None
    """The leg's sample rate (the model session is opened at it); None: Twilio's."""

    @property
    def name(self) -> str:
        return self.dialer.name

    def call_sid(self, carrier_call_id: str) -> str:
        """Our SID (rows, the live call) for the carrier's call id."""
        if self.dialer.name == "twilio":
            return carrier_call_id
        return bridge_call_sid(self.dialer.name, carrier_call_id)


def _call(call: Any) -> CarrierCall:
    return CarrierCall(
        sid=str(call.sid),
        status=str(call.status),
        to=str(call.to or ""),
        from_=str(call._from or ""),
        answered_by=str(call.answered_by) if call.answered_by else None,
    )
