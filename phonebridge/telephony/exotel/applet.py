"""Exotel Voicebot applet URL handling (CARRIERS.md §5.1-§5.2).

The Voicebot applet in an Exotel call flow is configured with either a fixed
``wss://`` URL or an **https endpoint that answers ``{"url": "wss://…"}``**
per call. The bridge is that endpoint (``GET /exotel/voice``): it reads the
call's parameters, takes a model lease, and answers the socket URL for this
call:

- ``?sample-rate=16000`` selects wideband slin (8000 is the default);
- at most **3 custom ``key=value`` pairs, ≤ 256 characters** in the query,
  echoed in ``start.custom_parameters`` — the per-call token travels there;
- Basic auth, when configured, is written as ``KEY:TOKEN@`` userinfo; Exotel
  turns it into the upgrade's ``Authorization`` header.

Exotel's request to the endpoint carries Twilio-like names (``CallSid``,
``CallFrom``, ``CallTo``, ``From``, ``To``, ``Direction``, ``CustomField``);
both the ``Call*`` and the plain spellings are read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from phonebridge.errors import LocalProtocolError, RemoteProtocolError
from phonebridge.telephony.stream import RATES

MAX_CUSTOM_PARAMETERS: Final = 3
MAX_QUERY_CHARS: Final = 256


@dataclass(frozen=True, slots=True)
class AppletRequest:
    call_sid: str
    from_number: str
    to_number: str


def parse_request(params: Mapping[str, str]) -> AppletRequest:
    call_sid = params.get("CallSid", "")
    if not call_sid:
        raise RemoteProtocolError("applet request without CallSid")
    return AppletRequest(
        call_sid=call_sid,
        from_number=params.get("CallFrom") or params.get("From", ""),
        to_number=params.get("CallTo") or params.get("To", ""),
    )


def stream_url(
    base_url: str,
    *,
    sample_rate: int,
    parameters: Mapping[str, str],
    basic_user: str = "",
    basic_password: str = "",
) -> str:
    """The per-call ``wss://`` URL (with ``sample-rate`` and the custom parameters)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("wss", "ws") or not parts.hostname or parts.query:
        raise LocalProtocolError(f"Voicebot URL must be ws(s):// without a query: {base_url!r}")
    if sample_rate not in RATES:
        raise LocalProtocolError(f"Exotel streams at {RATES} Hz, not {sample_rate}")
    if len(parameters) > MAX_CUSTOM_PARAMETERS:
        raise LocalProtocolError(f"at most {MAX_CUSTOM_PARAMETERS} custom parameters")
    custom = urlencode(dict(parameters))
    if len(custom) > MAX_QUERY_CHARS:
        raise LocalProtocolError(f"custom parameters of {len(custom)} chars (max 256)")
    query = urlencode({"sample-rate": str(sample_rate)}) + ("&" + custom if custom else "")
    netloc = parts.netloc.rpartition("@")[2]
    if basic_user:
        netloc = f"{quote(basic_user, safe='')}:{quote(basic_password, safe='')}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def answer(url: str) -> str:
    """The endpoint's JSON answer."""
    return json.dumps({"url": url})
