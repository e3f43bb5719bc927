"""TwiML the bridge answers with, built with the ``twilio`` package.

PROTOCOLS.md §1.1. The rules enforced here are the ones that fail silently or
cost money when broken:

- the ``<Stream url>`` must be ``wss://`` and carry **no query string**
  (Twilio's handshake fails with 31920); per-call data travels as
  ``<Parameter>``s and arrives in ``start.customParameters``;
- nothing follows ``</Connect>``: TwiML left after it (a ``<Pause>``) would keep
  the line open and billing after the bridge closes the stream; what happens
  next is decided by the ``action`` URL instead.

Every builder returns the complete document (XML declaration included) as
``str``; misuse raises :class:`LocalProtocolError` (the bug is ours).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from twilio.twiml.voice_response import Connect, Stream, VoiceResponse

from phonebridge.errors import LocalProtocolError
from phonebridge.telephony.twilio.stream_url import stream_url_problem

MAX_PARAMETER_CHARS: Final = 500
"""Name + value length we allow per ``<Parameter>`` (Twilio's limit is *unverified*, §1.1)."""

_E164: Final = re.compile(r"\+[1-9][0-9]{1,14}")


def _check_stream_url(url: str) -> None:
    # The same rule start-up applies to PHONEBRIDGE_PUBLIC_URL (config/telephony.py).
    problem = stream_url_problem(url)
    if problem is not None:
        raise LocalProtocolError(problem)


def _check_http_url(url: str, what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LocalProtocolError(f"{what} must be an absolute http(s) URL, got {url!r}")


def connect_stream(
    stream_url: str,
    action_url: str,
    parameters: Mapping[str, str],
    status_callback: str | None = None,
) -> str:
    """``<Response><Connect action><Stream url><Parameter/>…</Stream></Connect></Response>``.

    ``action_url`` is requested (POST) when the stream ends; its answer decides
    what the caller hears next. ``status_callback`` receives stream-started /
    stream-stopped / stream-error (POST).
    """
    _check_stream_url(stream_url)
    _check_http_url(action_url, "<Connect action>")
    if status_callback is not None:
        _check_http_url(status_callback, "<Stream statusCallback>")
    response = VoiceResponse()
    connect = Connect(action=action_url, method="POST")
    stream = Stream(
        url=stream_url,
        status_callback=status_callback,
        status_callback_method="POST" if status_callback else None,
    )
    for name, value in parameters.items():
        if not name:
            raise LocalProtocolError("<Parameter> name must not be empty")
        if len(name) + len(value) > MAX_PARAMETER_CHARS:
            raise LocalProtocolError(
                f"<Parameter {name}> is {len(name) + len(value)} chars; "
                f"keep name + value under {MAX_PARAMETER_CHARS}"
            )
        stream.parameter(name=name, value=value)
    connect.append(stream)
    response.append(connect)
    return str(response.to_xml())


def say_and_hangup(message: str, voice: str | None = None) -> str:
    """Speak ``message`` (Twilio TTS) and end the call: the busy / fallback answer."""
    if not message.strip():
        raise LocalProtocolError("<Say> message must not be empty")
    response = VoiceResponse()
    response.say(message, voice=voice)
    response.hangup()
    return str(response.to_xml())


def dial(number: str, message: str | None = None) -> str:
    """Optionally speak ``message``, then transfer the caller to ``number`` (E.164)."""
    if not _E164.fullmatch(number):
        raise LocalProtocolError(f"<Dial> number must be E.164 (+14165550123), got {number!r}")
    response = VoiceResponse()
    if message:
        response.say(message)
    response.dial(number)
    return str(response.to_xml())


def hangup() -> str:
    """``<Response><Hangup/></Response>``."""
    response = VoiceResponse()
    response.hangup()
    return str(response.to_xml())
