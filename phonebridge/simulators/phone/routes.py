"""Where the simulator really connects, versus the URLs it signs.

Twilio reaches the bridge at its public URL (``https://bridge.example.com``),
usually through a TLS-terminating proxy; in tests and the demo the bridge
listens on plain ``http``/``ws`` on loopback. Like such a proxy, the simulator
signs every URL exactly as the bridge wrote it (that is what Twilio signs,
PROTOCOLS.md §1.4) but connects to the local address.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

_WS_SCHEME = {"http": "ws", "https": "wss"}


@dataclass(frozen=True, slots=True)
class Routes:
    public_base: str  # what Twilio is configured with, e.g. https://bridge.example.com
    local_base: str  # where the bridge really listens, e.g. http://127.0.0.1:8080
    connect_override: str | None = None  # ws(s):// base, or a full URL, for the stream

    def http(self, url: str) -> str:
        """The local URL to POST for a public ``http(s)`` URL."""
        return _rebase(url, self.public_base, self.local_base)

    def websocket(self, stream_url: str) -> str:
        """The local URL to open for the ``<Stream url>`` the TwiML named.

        ``connect_override`` is either a base (``ws://127.0.0.1:8080``: the
        stream URL's path is appended, as a proxy forwards it) or, when it has
        a path of its own, the exact URL to open.
        """
        if self.connect_override:
            override = self.connect_override.rstrip("/")
            if urlsplit(override).path:
                return override
            parts = urlsplit(stream_url)
            return override + parts.path + (f"?{parts.query}" if parts.query else "")
        return _rebase(stream_url, _as_ws(self.public_base), _as_ws(self.local_base))


def _as_ws(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return _WS_SCHEME.get(scheme, scheme) + sep + rest


def _rebase(url: str, public: str, local: str) -> str:
    public = public.rstrip("/")
    if url == public or url.startswith(public + "/"):
        return local.rstrip("/") + url[len(public) :]
    return url
