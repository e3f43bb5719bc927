"""Thin websockets client for a self-hosted PersonaPlex server (PROTOCOLS.md §2).

The wire rules live in :mod:`phonebridge.models.personaplex_protocol`; this
module adds what only the socket knows: a busy server (§2.5) upgrades a second
connection at once and then hangs silently, so a handshake that does not come
within ``handshake_timeout`` is reported as :class:`ServerBusyOrSlow` and the
socket is closed. The client never waits forever.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from phonebridge.errors import HandshakeTimeout, LocalProtocolError, ModelBusy, ModelError
from phonebridge.models.base import SessionRequest
from phonebridge.models.personaplex_protocol import OggStreamProtocol, build_chat_url
from phonebridge.models.wsclient import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_OPEN_TIMEOUT,
    Clock,
    WebSocketModelSession,
)

# Conditioning takes seconds on real hardware (2.2 s with a tiny CPU model);
# 30 s covers a cold GPU without letting a hung server hold a call for long.
DEFAULT_HANDSHAKE_TIMEOUT: Final[float] = 30.0


class ServerBusyOrSlow(HandshakeTimeout, ModelBusy):
    """No ``0x00`` in time: the server is in another call (§2.5) or conditions too slowly.

    Both causes look the same from here, so it is both a :class:`HandshakeTimeout`
    and a :class:`ModelBusy`; either ``except`` clause catches it.
    """


class PersonaPlexSession(WebSocketModelSession):
    """One conversation with one self-hosted ``moshi.server`` (held under an exclusive lease)."""

    provider = "personaplex"
    supports_end_of_turn = False
    supports_text_injection = False

    def __init__(
        self,
        request: SessionRequest,
        *,
        server_url: str,
        clock: Clock = time.monotonic,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        opus_complexity: int | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        super().__init__(
            url=build_chat_url(server_url, request),
            protocol=OggStreamProtocol(complexity=opus_complexity, sample_rate=request.sample_rate),
            clock=clock,
            handshake_timeout=handshake_timeout,
            open_timeout=open_timeout,
            close_timeout=close_timeout,
            logger=logger,
        )
        self.server_url = server_url

    def _handshake_error(self) -> ModelError:
        return ServerBusyOrSlow(
            f"personaplex: no handshake from {self.server_url} within "
            f"{self._handshake_timeout:g} s: server busy or conditioning too slow"
        )

    async def end_of_turn(self) -> None:
        raise LocalProtocolError("the self-hosted server has no end-of-turn control (§2.2)")

    async def inject_text(self, text: str) -> None:
        raise LocalProtocolError("the self-hosted server has no text injection (§2.2)")
