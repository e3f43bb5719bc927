"""Sans-I/O core of PolarGrid's hosted PersonaPlex (PROTOCOLS.md §3).

The stream is the self-hosted one (§2.2-§2.4: handshake ``0x00``, Ogg/Opus in
``0x01`` starting with the BOS page, text pieces in ``0x02``) plus two things
a client may send: ``0x03`` control frames carrying ``bos``/``eos``
(``eos`` = "the caller finished a turn") and ``0x02`` text to inject.

Auth: the ``pg_…`` key as the subprotocol ``bearer.<key>`` (the default: it
keeps the key out of URLs and access logs) or as a ``token=`` query parameter.
The key is a parameter of these functions, never read from the environment.
"""

from __future__ import annotations

from typing import Final, Literal
from urllib.parse import urlencode, urlsplit

from phonebridge.errors import ConfigError
from phonebridge.models.base import SessionRequest
from phonebridge.models.personaplex_protocol import Kind, OggStreamProtocol, check_request

DEFAULT_REGION: Final[str] = "yto-01"
KNOWN_REGIONS: Final[frozenset[str]] = frozenset(
    {"yto-01", "yul-01", "yul-02", "yvr-02", "nyc-01", "nyc-02", "dfw-01", "dfw-02", "sfo-01"}
)
VOICE_PATH: Final[str] = "/v1/voice/personaplex"
BEARER_PREFIX: Final[str] = "bearer."

AuthMode = Literal["subprotocol", "query"]
ControlWord = Literal["bos", "eos"]


def region_base_url(region: str) -> str:
    """``wss://api.<region>.edge.polargrid.ai`` for a region such as ``yto-01``."""
    # Regions outside the list we have seen are allowed (new edges appear), but
    # must look like one: it becomes part of a host name.
    if not region or not all(c.isalnum() or c == "-" for c in region):
        raise ConfigError(f"not a PolarGrid region: {region!r}")
    return f"wss://api.{region}.edge.polargrid.ai"


def build_url(
    request: SessionRequest,
    *,
    region: str = DEFAULT_REGION,
    base_url: str | None = None,
    api_key: str | None = None,
    auth: AuthMode = "subprotocol",
) -> str:
    """The voice URL: ``voice`` without ``.pt``, ``persona`` URL-encoded.

    ``api_key`` goes into the URL only with ``auth="query"``; such a URL must
    only ever be logged through :func:`phonebridge.models.redact.redact_url`.
    """
    check_request(request)
    base = (base_url or region_base_url(region)).rstrip("/")
    if urlsplit(base).scheme not in ("ws", "wss"):
        raise ConfigError("a PolarGrid base URL must be ws:// or wss://")
    params = {"voice": request.voice, "persona": request.prompt}
    if auth == "query":
        if not api_key:
            raise ConfigError("PolarGrid query auth needs an API key")
        params["token"] = api_key
    return f"{base}{VOICE_PATH}?{urlencode(params)}"


def subprotocols(api_key: str, auth: AuthMode = "subprotocol") -> list[str]:
    """The ``Sec-WebSocket-Protocol`` offer: ``bearer.<key>``, or nothing for query auth."""
    if auth == "query":
        return []
    if not api_key:
        raise ConfigError("PolarGrid needs an API key")
    return [BEARER_PREFIX + api_key]


class PolarGridProtocol(OggStreamProtocol):
    """The §2 stream plus the client → server ``0x03`` control and ``0x02`` text frames."""

    def control_frame(self, word: ControlWord) -> list[bytes]:
        """A ``0x03`` control frame (none before the handshake: the server is not listening)."""
        if not self.ready:
            return []
        return [bytes([Kind.CONTROL]) + word.encode("ascii")]

    def text_frame(self, text: str) -> list[bytes]:
        """A ``0x02`` frame injecting ``text`` into the conversation."""
        if not self.ready or not text:
            return []
        return [bytes([Kind.TEXT]) + text.encode("utf-8")]
