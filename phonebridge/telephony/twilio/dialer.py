"""Placing calls with Twilio's REST API, and reading its call callbacks.

:class:`TwilioDialer` uses the official ``twilio`` package (Calls resource,
2010-04-01 API): ``calls.create`` with ``machine_detection`` and
``async_amd`` so the call is connected at once and the AMD verdict arrives
later on its own callback. The client is blocking (``requests``): each request
runs in a worker thread. ``api_base_url`` (``TWILIO_API_URL``) replaces
``https://api.twilio.com``; the tests point it at a fake Calls API on loopback.

The callbacks (``answer``, ``status``, ``amd``) are signed forms; their words
are translated to the outbound service's (:mod:`phonebridge.outbound.carrier`)
by :func:`call_status` and :func:`machine_verdict`. SignalWire's Compatibility
API is the same resource and callbacks (:mod:`..signalwire.dialer`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any, get_args

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from phonebridge.outbound.carrier import (
    CallStatus,
    CarrierCall,
    CarrierError,
    DialRequest,
    MachineVerdict,
)
from phonebridge.telephony.twilio.rest import BaseUrlHttpClient

_STATUSES: frozenset[str] = frozenset(get_args(CallStatus))
_MACHINE = frozenset({"machine_start", "fax"})
_MESSAGE_END = frozenset({"machine_end_beep", "machine_end_silence", "machine_end_other"})


def call_status(value: str) -> CallStatus | None:
    """Twilio's ``CallStatus`` (the service's vocabulary is Twilio's); None if unknown."""
    return value if value in _STATUSES else None  # type: ignore[return-value]


def machine_verdict(answered_by: str) -> MachineVerdict:
    """Twilio's ``AnsweredBy``: ``machine_end_*`` come from ``DetectMessageEnd``,
    after the greeting's beep (or its silence, or whatever ended it)."""
    if answered_by == "human":
        return "human"
    if answered_by in _MESSAGE_END:
        return "message_end"
    if answered_by in _MACHINE:
        return "machine"
    return "unknown"


class TwilioDialer:
    """Places calls with Twilio's Calls resource."""

    name = "twilio"
    label = "Twilio"
    leaves_voicemail = True

    def __init__(self, account_sid: str, auth_token: str, *, api_base_url: str | None = None):
        http = (
            BaseUrlHttpClient(api_base_url, timeout=15)
            if api_base_url
            else TwilioHttpClient(timeout=15)
        )
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
            url=request.callback_url("answer"),
            method="POST",
            status_callback=request.callback_url("status"),
            status_callback_method="POST",
            status_callback_event=["initiated", "ringing", "answered", "completed"],
            timeout=request.ring_seconds,
            machine_detection=detection,
            async_amd="true",
            async_amd_status_callback=request.callback_url("amd"),
            async_amd_status_callback_method="POST",
        )
        return self._call(call)

    async def fetch(self, call_sid: str) -> CarrierCall | None:
        try:
            return self._call(await self._run(self._client.calls(call_sid).fetch))
        except CarrierError as exc:
            if exc.status == 404:
                return None
            raise

    async def find(
        self, *, attempt_id: str, to: str, from_: str, since: datetime
    ) -> Sequence[CarrierCall]:
        # Twilio keeps no tag of ours on a call: the list by To/From/start time is
        # complete for the window, and the service adopts the first call no other
        # attempt owns.
        found = await self._run(
            self._client.calls.list, to=to, from_=from_, start_time_after=since, limit=20
        )
        return [self._call(c) for c in found]

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

    def _call(self, call: Any) -> CarrierCall:
        status = call_status(str(call.status))
        if status is None:
            raise CarrierError(f"{self.label} API: unknown call status {call.status!r}")
        return CarrierCall(
            sid=str(call.sid),
            status=status,
            to=str(call.to or ""),
            from_=str(call._from or ""),
            answered_by=str(call.answered_by) if call.answered_by else None,
        )
