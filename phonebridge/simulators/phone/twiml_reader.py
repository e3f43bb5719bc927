"""Reading the TwiML an app answers with, as Twilio does (PROTOCOLS.md §1.1).

Only the verbs the bridge uses are understood (``Connect/Stream/Parameter``,
``Say``, ``Dial``, ``Hangup``, ``Pause``, ``Redirect``); the rest are recorded
by name. Twilio's own error codes are used for documents it would refuse.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Final

from phonebridge.errors import RemoteProtocolError

DOCUMENT_PARSE_FAILURE: Final = 12100
INVALID_CONTENT_TYPE: Final = 12300


class TwimlRejectedError(RemoteProtocolError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class TwimlAnswer:
    verbs: tuple[str, ...]  # top-level verbs, in order
    stream_url: str | None = None
    action_url: str | None = None
    action_method: str = "POST"
    parameters: dict[str, str] = field(default_factory=dict)
    status_callback: str | None = None
    said: tuple[str, ...] = ()
    dialled: tuple[str, ...] = ()
    after_connect: tuple[str, ...] = ()  # verbs after </Connect>: keep the line open

    @property
    def connects_stream(self) -> bool:
        return self.stream_url is not None


def read_twiml(text: str, content_type: str | None) -> TwimlAnswer:
    """Parse an answer; raise :class:`TwimlRejectedError` where Twilio would give up."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type not in ("text/xml", "application/xml", "text/html"):
        raise TwimlRejectedError(INVALID_CONTENT_TYPE, f"TwiML served as {content_type!r}")
    try:
        # The document is the bridge under test's own answer, parsed in a test double.
        root = ET.fromstring(text)  # noqa: S314
    except ET.ParseError as exc:
        raise TwimlRejectedError(DOCUMENT_PARSE_FAILURE, f"TwiML is not XML: {exc}") from exc
    if root.tag != "Response":
        raise TwimlRejectedError(DOCUMENT_PARSE_FAILURE, f"root element is <{root.tag}>")
    verbs = tuple(child.tag for child in root)
    said = tuple((child.text or "").strip() for child in root if child.tag == "Say")
    dialled = tuple(
        (child.text or "").strip() or ",".join((n.text or "").strip() for n in child)
        for child in root
        if child.tag == "Dial"
    )
    connect = root.find("Connect")
    if connect is None:
        return TwimlAnswer(verbs=verbs, said=said, dialled=dialled)
    stream = connect.find("Stream")
    position = list(root).index(connect)
    after = tuple(child.tag for child in list(root)[position + 1 :])
    return TwimlAnswer(
        verbs=verbs,
        stream_url=stream.get("url") if stream is not None else None,
        action_url=connect.get("action"),
        action_method=(connect.get("method") or "POST").upper(),
        parameters={
            p.get("name", ""): p.get("value", "")
            for p in (stream.findall("Parameter") if stream is not None else [])
        },
        status_callback=stream.get("statusCallback") if stream is not None else None,
        said=said,
        dialled=dialled,
        after_connect=after,
    )
