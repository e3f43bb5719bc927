"""SignalWire cXML the bridge answers with (CARRIERS.md §4.1).

``<Response><Connect><Stream url codec authBearerToken><Parameter/>…</Stream></Connect>``:

- ``<Connect>`` (bidirectional), never ``<Start>`` (one-way; cXML would move on);
- ``url`` must be ``wss://`` and carry **no query string** (SignalWire rejects
  both): per-call values go in ``<Parameter>`` → ``start.customParameters``;
- ``codec="L16@16000h"`` (or ``@24000h``) for a wideband leg, ``PCMU@8000h``
  for narrowband — a wideband codec not enabled on the account fails the
  stream with ``codec_error``;
- ``authBearerToken`` = the per-call secret, returned as
  ``Authorization: Bearer`` on the upgrade (the only socket auth);
- nothing after ``</Connect>`` except via the ``action`` URL (a trailing timed
  verb would keep the line open, as for Twilio and TeXML).

cXML is TwiML-compatible, so the ``twilio`` builder writes it (its elements
pass unknown attributes through, camel-casing ``auth_bearer_token``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from twilio.twiml.voice_response import Connect, Stream, VoiceResponse

from phonebridge.errors import LocalProtocolError

CODECS: Final = {8_000: "PCMU@8000h", 16_000: "L16@16000h", 24_000: "L16@24000h"}


def connect_stream(
    stream_url: str,
    *,
    action_url: str,
    sample_rate: int,
    bearer_token: str,
    parameters: Mapping[str, str],
    status_callback: str | None = None,
) -> str:
    parts = urlsplit(stream_url)
    if parts.scheme != "wss" or not parts.hostname:
        raise LocalProtocolError(f"<Stream url> must be wss://, got {stream_url!r}")
    if parts.query or "?" in stream_url or parts.fragment:
        raise LocalProtocolError(f"<Stream url> must not carry a query string: {stream_url!r}")
    if urlsplit(action_url).scheme not in ("http", "https"):
        raise LocalProtocolError(f"<Connect action> must be http(s), got {action_url!r}")
    if sample_rate not in CODECS:
        raise LocalProtocolError(f"no SignalWire codec for {sample_rate} Hz")
    if not bearer_token:
        raise LocalProtocolError("authBearerToken must not be empty")
    response = VoiceResponse()
    connect = Connect(action=action_url, method="POST")
    stream = Stream(
        url=stream_url,
        codec=CODECS[sample_rate],
        auth_bearer_token=bearer_token,
        status_callback=status_callback,
        status_callback_method="POST" if status_callback else None,
    )
    for name, value in parameters.items():
        if not name:
            raise LocalProtocolError("<Parameter> name must not be empty")
        stream.parameter(name=name, value=value)
    connect.append(stream)
    response.append(connect)
    return str(response.to_xml())
