"""Vonage NCCOs the bridge answers with, and the webhooks it reads (CARRIERS.md §3.1).

The answer is ``connect`` to a ``websocket`` endpoint:

- ``content-type`` (hyphenated key) ``audio/l16;rate=16000`` for a wideband
  leg (8000 and 16000 are the documented rates; 24000 exists only in the Node
  SDK's enum, so it is not asked for);
- ``headers`` carry the call's ``uuid`` (as ``call_uuid``), the numbers and
  our per-call values; Vonage returns them flattened in
  ``websocket:connected``;
- ``authorization: {"type": "vonage"}``: the upgrade carries Vonage's signed
  JWT (verified with the signature secret by :mod:`.signature`);
- ``eventType: "synchronous"`` with an ``eventUrl``: when the socket fails or
  disconnects Vonage POSTs there and **runs the NCCO we answer** — the fallback
  (apology, transfer) of the ``disconnected`` case.

Numbers in Vonage's requests have no ``+`` (§3.1); :func:`parse_answer`
normalises them to E.164.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from phonebridge.errors import LocalProtocolError, RemoteProtocolError
from phonebridge.personas.transfer import SIP_PATTERN
from phonebridge.telephony.stream import opt_string
from phonebridge.telephony.vonage.protocol import CALL_UUID_HEADER, content_type, e164

MAX_HEADERS_BYTES: Final = 512

Ncco = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class AnswerRequest:
    uuid: str
    conversation_uuid: str
    from_number: str
    to_number: str


def parse_answer(params: Mapping[str, str]) -> AnswerRequest:
    """The answer_url request (GET query or POST JSON, same keys)."""
    uuid = params.get("uuid", "")
    if not uuid:
        raise RemoteProtocolError("answer request without a uuid")
    return AnswerRequest(
        uuid=uuid,
        conversation_uuid=params.get("conversation_uuid", ""),
        from_number=e164(params.get("from", "")),
        to_number=e164(params.get("to", "")),
    )


@dataclass(frozen=True, slots=True)
class CallEvent:
    status: str  # started, ringing, answered, completed, disconnected, failed …
    uuid: str
    to: str
    headers: Mapping[str, Any]


def parse_event(body: bytes) -> CallEvent:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise RemoteProtocolError(f"event body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise RemoteProtocolError("event body is not a JSON object")
    headers = doc.get("headers")
    return CallEvent(
        status=opt_string(doc, "status", "event"),
        uuid=opt_string(doc, "uuid", "event"),
        to=opt_string(doc, "to", "event") if isinstance(doc.get("to"), str) else "",
        headers=headers if isinstance(headers, dict) else {},
    )


def connect_websocket(
    uri: str,
    *,
    call: AnswerRequest,
    sample_rate: int,
    headers: Mapping[str, str],
    event_url: str,
) -> Ncco:
    """``[{"action":"connect", … "endpoint":[{"type":"websocket", …}]}]``."""
    parts = urlsplit(uri)
    if parts.scheme != "wss" or not parts.hostname:
        raise LocalProtocolError(f"websocket uri must be wss://, got {uri!r}")
    if sample_rate not in (8_000, 16_000):
        raise LocalProtocolError(f"Vonage streams L16 at 8000 or 16000 Hz, not {sample_rate}")
    if urlsplit(event_url).scheme not in ("http", "https"):
        raise LocalProtocolError(f"eventUrl must be http(s), got {event_url!r}")
    all_headers = {
        **headers,
        CALL_UUID_HEADER: call.uuid,
        "from": call.from_number,
        "to": call.to_number,
    }
    if len(json.dumps(all_headers)) > MAX_HEADERS_BYTES:
        raise LocalProtocolError(f"websocket headers exceed {MAX_HEADERS_BYTES} bytes")
    return [
        {
            "action": "connect",
            "eventType": "synchronous",
            "eventUrl": [event_url],
            "endpoint": [
                {
                    "type": "websocket",
                    "uri": uri,
                    "content-type": content_type(sample_rate),
                    "headers": all_headers,
                    "authorization": {"type": "vonage"},
                }
            ],
        }
    ]


def talk(message: str, language: str = "en-US") -> Ncco:
    """Speak and end (an NCCO that runs out hangs up)."""
    if not message.strip():
        raise LocalProtocolError("talk text must not be empty")
    return [{"action": "talk", "text": message, "language": language}]


def transfer(number: str, message: str | None = None) -> Ncco:
    """``connect`` to a phone (E.164, sent without ``+``) or a ``sip`` endpoint; nothing
    after it."""
    endpoint: dict[str, Any]
    if SIP_PATTERN.fullmatch(number):
        endpoint = {"type": "sip", "uri": number}
    elif number.startswith("+") and number[1:].isdigit():
        endpoint = {"type": "phone", "number": number[1:]}
    else:
        raise LocalProtocolError(f"transfer target must be E.164 or a SIP URI, got {number!r}")
    ncco: Ncco = talk(message) if message else []
    ncco.append({"action": "connect", "endpoint": [endpoint]})
    return ncco
