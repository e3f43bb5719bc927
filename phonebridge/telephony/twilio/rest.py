"""Call control over Twilio's REST API: hang up, redirect, place a call, point a number at us.

PROTOCOLS.md §1.5. A thin async wrapper on ``twilio.rest.Client``: the client
is blocking (``requests``), so each call runs in a worker thread
(:func:`asyncio.to_thread`) and never stalls the event loop that carries the
audio of every other call.

Credentials are passed in (read from the environment by ``config``), never
read here; the client's own environment fallback is disabled by passing an
empty environment.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from phonebridge.errors import PhonebridgeError

CALL_NOT_FOUND: Final = 20404
"""Twilio's "resource not found": for a hang-up it means the call is already gone."""


class TwilioApiError(PhonebridgeError):
    """A Twilio REST request failed (``status``: HTTP status, ``code``: Twilio error code)."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


TWILIO_API: Final = "https://api.twilio.com"


class BaseUrlHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """The package's own transport, sending api.twilio.com requests to ``base`` instead.

    ``TWILIO_API_URL`` (config/telephony.py): an egress proxy, or the fake API of the
    tests and demos. The ``twilio`` package offers regions and edges of
    api.twilio.com but no base URL of one's own, so the rewrite happens here,
    at the one place every request passes.
    """

    def __init__(self, base: str, *, timeout: float = 10.0) -> None:
        super().__init__(timeout=timeout)
        self.base = base.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if url.startswith(TWILIO_API + "/"):
            url = self.base + url[len(TWILIO_API) :]
        return super().request(method, url, *args, **kwargs)


class TwilioCallControl:
    """Async call control for one Twilio account.

    ``http_client`` is a ``twilio.http.HttpClient``; tests pass one that talks to
    a fake API on loopback.
    """

    def __init__(
        self, account_sid: str, auth_token: str, *, http_client: HttpClient | None = None
    ) -> None:
        self._client = Client(account_sid, auth_token, http_client=http_client, environment={})

    async def hang_up(self, call_sid: str) -> bool:
        """End the call. Returns False if it was already gone (20404): still a success."""
        return await self._end(call_sid, "completed")

    async def cancel(self, call_sid: str) -> bool:
        """Stop a call that is still ringing (``canceled``); False if already gone."""
        return await self._end(call_sid, "canceled")

    async def _end(self, call_sid: str, status: str) -> bool:
        try:
            await self._run(self._client.calls(call_sid).update, status=status)
        except TwilioApiError as exc:
            if exc.code == CALL_NOT_FOUND or exc.status == 404:
                # The caller (or the human) hung up first: the call is over,
                # which is what was asked. Not an error (issue 17).
                return False
            raise
        return True

    async def create_call(
        self,
        *,
        to: str,
        from_: str,
        url: str,
        status_callback: str,
        ring_seconds: int,
    ) -> str:
        """Place a call to ``to`` (E.164 or ``sip:``) that runs the TwiML at ``url`` when
        answered; ``status_callback`` gets its final status. Returns the call SID."""
        call = await self._run(
            self._client.calls.create,
            to=to,
            from_=from_,
            url=url,
            method="POST",
            status_callback=status_callback,
            status_callback_method="POST",
            status_callback_event=["completed"],
            timeout=ring_seconds,
        )
        return str(call.sid)

    async def redirect(self, call_sid: str, twiml: str) -> None:
        """Replace what the call is doing with ``twiml`` (e.g. a ``<Dial>`` to a human)."""
        await self._run(self._client.calls(call_sid).update, twiml=twiml)

    async def configure_number(
        self, phone_number: str, voice_url: str, status_callback_url: str | None = None
    ) -> str:
        """Point ``phone_number`` (E.164, on this account) at ``voice_url`` (POST).

        ``status_callback_url`` receives the call's final status: how the bridge
        learns that a caller hung up while it rang. Returns the IncomingPhoneNumber SID.
        """
        found = await self._run(
            self._client.incoming_phone_numbers.list, phone_number=phone_number, limit=2
        )
        if len(found) != 1:
            raise TwilioApiError(
                f"{phone_number} is not a phone number of this account"
                if not found
                else f"{phone_number} matches several numbers of this account"
            )
        sid = str(found[0].sid)
        await self._run(
            self._client.incoming_phone_numbers(sid).update,
            voice_url=voice_url,
            voice_method="POST",
            **(
                {"status_callback": status_callback_url, "status_callback_method": "POST"}
                if status_callback_url is not None
                else {}
            ),
        )
        return sid

    @staticmethod
    async def _run(function: Any, /, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(function, **kwargs)
        except TwilioRestException as exc:
            raise TwilioApiError(
                f"Twilio API {exc.method} {exc.uri}: HTTP {exc.status} {exc.msg}",
                status=exc.status,
                code=exc.code,
            ) from exc
        except (TwilioException, requests.RequestException) as exc:
            raise TwilioApiError(f"Twilio API request failed: {exc}") from exc
