"""Plivo XML the bridge answers with (CARRIERS.md §2.1).

``<Response><Stream bidirectional="true" keepCallAlive="true" …>wss://…</Stream></Response>``:

- ``bidirectional="true"`` or Plivo drops our ``playAudio`` (§8.6), and then
  ``audioTrack`` must be ``inbound``;
- ``keepCallAlive="true"``: the rest of the document runs only after the
  stream ends — without it the call moves on (and ends) at once;
- ``contentType`` is always set: its default differs between Plivo's doc
  pages (§2.1). ``audio/x-l16;rate=16000`` for a wideband leg;
- per-call data travels in ``extraHeaders`` (``k=v,…``, only ``[A-Za-z0-9]``,
  ≤ 512 bytes): query strings on the stream URL are *unverified*.

Built with :mod:`xml.etree` (escaping done by the library); the ``plivo``
package's builder would bring lxml and a REST client for four attributes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element, SubElement, tostring

from phonebridge.errors import LocalProtocolError
from phonebridge.personas.transfer import SIP_PATTERN

MAX_EXTRA_HEADERS_BYTES: Final = 512
_ALNUM: Final = re.compile(r"[A-Za-z0-9]+")
_E164: Final = re.compile(r"\+[1-9][0-9]{1,14}")


def _document(response: Element) -> str:
    return '<?xml version="1.0" encoding="UTF-8"?>' + tostring(response, encoding="unicode")


def extra_headers(values: Mapping[str, str]) -> str:
    text = ",".join(f"{k}={v}" for k, v in values.items())
    for key, value in values.items():
        if not _ALNUM.fullmatch(key) or not _ALNUM.fullmatch(value):
            raise LocalProtocolError(f"extraHeaders allow only [A-Za-z0-9]: {key}={value}")
    if len(text) > MAX_EXTRA_HEADERS_BYTES:
        raise LocalProtocolError(f"extraHeaders of {len(text)} bytes (max 512)")
    return text


def stream(
    stream_url: str,
    *,
    sample_rate: int,
    headers: Mapping[str, str],
    status_callback: str | None = None,
    timeout_seconds: int = 4 * 3600,
) -> str:
    """The bidirectional ``<Stream>`` answer."""
    parts = urlsplit(stream_url)
    if parts.scheme != "wss" or not parts.hostname or parts.query or parts.fragment:
        raise LocalProtocolError(f"<Stream> URL must be wss:// without a query: {stream_url!r}")
    if sample_rate not in (8_000, 16_000):
        raise LocalProtocolError(f"Plivo streams L16 at 8000 or 16000 Hz, not {sample_rate}")
    response = Element("Response")
    attributes = {
        "bidirectional": "true",
        "keepCallAlive": "true",
        "audioTrack": "inbound",
        "contentType": f"audio/x-l16;rate={sample_rate}",
        "streamTimeout": str(timeout_seconds),
    }
    if headers:
        attributes["extraHeaders"] = extra_headers(headers)
    if status_callback:
        attributes["statusCallbackUrl"] = status_callback
        attributes["statusCallbackMethod"] = "POST"
    element = SubElement(response, "Stream", attributes)
    element.text = stream_url
    return _document(response)


def speak_and_hangup(message: str) -> str:
    if not message.strip():
        raise LocalProtocolError("<Speak> message must not be empty")
    response = Element("Response")
    SubElement(response, "Speak").text = message
    SubElement(response, "Hangup")
    return _document(response)


def voicemail_after_beep(message: str, *, wait_seconds: int) -> str:
    """``<Wait beep="true">`` then ``<Speak>`` and ``<Hangup>``: Plivo's machine detection
    says only that a machine answered, so its XML waits for the greeting's beep (or
    ``wait_seconds``) before the message is spoken (docs/outbound.md)."""
    if not message.strip():
        raise LocalProtocolError("<Speak> message must not be empty")
    if wait_seconds < 1:
        raise LocalProtocolError(f"<Wait length> must be at least 1 s, not {wait_seconds}")
    response = Element("Response")
    SubElement(response, "Wait", {"length": str(wait_seconds), "beep": "true"})
    SubElement(response, "Speak").text = message
    SubElement(response, "Hangup")
    return _document(response)


def dial(number: str, message: str | None = None) -> str:
    """``<Dial>`` a ``<Number>`` (E.164, written without ``+``) or a SIP ``<User>``; nothing
    after it."""
    sip = SIP_PATTERN.fullmatch(number) is not None
    if not sip and not _E164.fullmatch(number):
        raise LocalProtocolError(f"<Dial> target must be E.164 or a SIP URI, got {number!r}")
    response = Element("Response")
    if message:
        SubElement(response, "Speak").text = message
    dial = SubElement(response, "Dial")
    if sip:
        SubElement(dial, "User").text = number
    else:
        SubElement(dial, "Number").text = number.lstrip("+")
    return _document(response)
