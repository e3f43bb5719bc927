"""Telnyx Call Control: the webhooks we read and the commands that answer a call.

CARRIERS.md §1.1. **Call Control, not TeXML**, for three reasons:

1. *The media socket can be authenticated.* ``streaming_start`` takes
   ``stream_auth_token`` (sent back on the upgrade); TeXML's ``<Stream>`` has no
   such attribute.
2. *No document owns the leg.* A TeXML document keeps running after the
   stream: a ``<Pause>`` left after it hangs up a caller who was transferred to
   a human meanwhile (§1.1, seen in production). With Call Control nothing runs
   after the stream unless we command it, and a transfer is one
   ``actions/transfer``.
3. *Wideband is a parameter.* ``stream_codec=L16`` and
   ``stream_bidirectional_codec=L16`` + ``…_sampling_rate=16000`` ask for
   linear PCM both ways; TeXML's inbound ``codec`` has no L16.

The cost is one REST round trip per call (answer, then ``streaming_start``,
because the ``answer`` parameters lack the auth token and the bidirectional
rate at SDK HEAD; §1.1). The builders here return the JSON bodies; the
requests are made by :mod:`.rest`.

``stream_bidirectional_mode`` is always ``rtp``: the default ``mp3`` plays only
whole files and silently drops live audio (§8.6). ``…_target_legs`` is left to
Telnyx's default (the documented values' meaning for a single answered leg is
*unverified*).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from phonebridge.errors import LocalProtocolError, RemoteProtocolError
from phonebridge.telephony.stream import RATES, obj, opt_string, string

MAX_AUTH_TOKEN_CHARS: Final = 4_000


@dataclass(frozen=True, slots=True)
class CallWebhook:
    """One Call Control webhook (``data.event_type`` and the call's identity)."""

    event_id: str
    event_type: str  # call.initiated, call.answered, call.hangup, streaming.started …
    call_control_id: str
    call_session_id: str
    from_number: str
    to_number: str
    direction: str
    client_state: str  # decoded text ("" when none)
    hangup_cause: str
    result: str = ""  # call.machine.*.ended: human, machine, beep_detected …


def parse_webhook(body: bytes) -> CallWebhook:
    """The webhook's JSON body (``RemoteProtocolError`` when it is not one)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise RemoteProtocolError(f"webhook body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise RemoteProtocolError("webhook body is not a JSON object")
    data = obj(doc, "data", "webhook")
    payload = obj(data, "payload", "webhook.data")
    state = opt_string(payload, "client_state", "payload")
    try:
        decoded = base64.b64decode(state, validate=True).decode() if state else ""
    except (ValueError, UnicodeDecodeError):
        decoded = ""  # someone else's client_state: not ours to read
    return CallWebhook(
        event_id=opt_string(data, "id", "webhook.data"),
        event_type=string(data, "event_type", "webhook.data"),
        call_control_id=string(payload, "call_control_id", "payload"),
        call_session_id=opt_string(payload, "call_session_id", "payload"),
        from_number=opt_string(payload, "from", "payload"),
        to_number=opt_string(payload, "to", "payload"),
        direction=opt_string(payload, "direction", "payload"),
        client_state=decoded,
        hangup_cause=opt_string(payload, "hangup_cause", "payload"),
        result=opt_string(payload, "result", "payload"),
    )


def _client_state(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def answer_command(client_state: str) -> dict[str, Any]:
    """Body of ``POST /v2/calls/{id}/actions/answer``."""
    return {"client_state": _client_state(client_state)}


def streaming_start_command(
    stream_url: str,
    *,
    auth_token: str,
    sample_rate: int,
    parameters: Mapping[str, str],
    client_state: str,
) -> dict[str, Any]:
    """Body of ``POST /v2/calls/{id}/actions/streaming_start``: L16 both ways, rtp mode."""
    parts = urlsplit(stream_url)
    if parts.scheme != "wss" or not parts.hostname:
        raise LocalProtocolError(f"stream_url must be an absolute wss:// URL, got {stream_url!r}")
    if sample_rate not in RATES:
        raise LocalProtocolError(f"sampling rate {sample_rate} not in {RATES}")
    if not auth_token or len(auth_token) > MAX_AUTH_TOKEN_CHARS:
        raise LocalProtocolError("stream_auth_token must be 1-4000 characters")
    return {
        "stream_url": stream_url,
        "stream_track": "inbound_track",
        "stream_codec": "L16",
        "stream_bidirectional_mode": "rtp",
        "stream_bidirectional_codec": "L16",
        "stream_bidirectional_sampling_rate": sample_rate,
        "stream_auth_token": auth_token,
        "custom_parameters": [{"name": k, "value": v} for k, v in parameters.items()],
        "client_state": _client_state(client_state),
    }


def speak_command(message: str, voice: str = "female", language: str = "en-US") -> dict[str, Any]:
    """Body of ``actions/speak`` (the busy / apology message before a hang-up)."""
    if not message.strip():
        raise LocalProtocolError("speak message must not be empty")
    return {"payload": message, "voice": voice, "language": language}


def transfer_command(to: str, from_: str | None = None) -> dict[str, Any]:
    """Body of ``actions/transfer`` (the fallback to a human)."""
    body: dict[str, Any] = {"to": to}
    if from_:
        body["from"] = from_
    return body
