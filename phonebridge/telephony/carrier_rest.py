"""Call control over the carriers' REST APIs, where closing the stream is not enough.

CARRIERS.md §1.1/§1.7 (Telnyx Call Control), §2.6 (Plivo). Only the two
carriers that need it:

- **Telnyx** answers the call itself over REST (``actions/answer`` then
  ``actions/streaming_start``) and, with Call Control, nothing runs after the
  stream unless we command it: the busy message, the fallback and the hang-up
  are ``actions/speak``, ``actions/transfer`` and ``actions/hangup``.
- **Plivo** with ``keepCallAlive`` ends the call when the stream closes and no
  XML follows; the fallback is ``POST …/Call/{uuid}/`` (``legs=aleg``,
  ``aleg_url`` = our document), the hang-up ``DELETE``.

SignalWire continues through its ``<Connect action>`` (like Twilio), Vonage
through its ``disconnected`` event's NCCO and Exotel through the next applet
of its flow: none needs REST. A 404 from either API means the call is already
gone: that is success for a hang-up, and nothing to do for a transfer.

Why plain ``httpx`` and not the ``telnyx``/``plivo`` SDKs: three requests in
all, each a JSON or form body these modules already build; the SDKs would
bring two dependency trees (and Plivo's is blocking, so a worker thread per
request) for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from phonebridge.errors import PhonebridgeError


class CarrierApiError(PhonebridgeError):
    """A carrier REST request failed (``status``: the HTTP status, ``None`` if none came)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


async def _request(http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> bool:
    """True when done, False when the call is gone (404); ``CarrierApiError`` otherwise."""
    try:
        response = await http.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise CarrierApiError(f"{method} {url.split('?', maxsplit=1)[0]}: {exc!r}") from exc
    if response.status_code == 404:
        return False
    if response.status_code >= 300:
        raise CarrierApiError(
            f"{method} {url.split('?', maxsplit=1)[0]} answered {response.status_code}",
            status=response.status_code,
        )
    return True


@dataclass(frozen=True, slots=True)
class TelnyxApi:
    """``POST {base}/v2/calls/{call_control_id}/actions/{action}`` with the API key."""

    http: httpx.AsyncClient
    base_url: str
    api_key: str

    async def action(self, call_control_id: str, action: str, body: dict[str, Any]) -> bool:
        url = f"{self.base_url.rstrip('/')}/v2/calls/{call_control_id}/actions/{action}"
        headers = {"Authorization": f"Bearer {self.api_key}"}
        return await _request(self.http, "POST", url, json=body, headers=headers)


@dataclass(frozen=True, slots=True)
class PlivoApi:
    """``…/v1/Account/{auth_id}/Call/{uuid}/`` with Basic ``auth_id:auth_token``."""

    http: httpx.AsyncClient
    base_url: str
    auth_id: str
    auth_token: str

    def _url(self, call_uuid: str) -> str:
        return f"{self.base_url.rstrip('/')}/v1/Account/{self.auth_id}/Call/{call_uuid}/"

    async def hang_up(self, call_uuid: str) -> bool:
        auth = (self.auth_id, self.auth_token)
        return await _request(self.http, "DELETE", self._url(call_uuid), auth=auth)

    async def transfer(self, call_uuid: str, aleg_url: str) -> bool:
        data = {"legs": "aleg", "aleg_url": aleg_url, "aleg_method": "POST"}
        auth = (self.auth_id, self.auth_token)
        return await _request(self.http, "POST", self._url(call_uuid), data=data, auth=auth)
