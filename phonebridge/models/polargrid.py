"""Thin websockets client for PolarGrid's hosted PersonaPlex (PROTOCOLS.md §3).

The key is passed in (``phonebridge.config`` reads ``POLARGRID_API_KEY``);
this module never reads the environment. It is offered as the subprotocol
``bearer.<key>`` by default so it stays out of URLs and access logs, and it is
masked in every log line, exception message and repr.
"""

from __future__ import annotations

import logging
import time

from phonebridge.models.base import SessionRequest
from phonebridge.models.personaplex import DEFAULT_HANDSHAKE_TIMEOUT
from phonebridge.models.polargrid_protocol import (
    DEFAULT_REGION,
    AuthMode,
    PolarGridProtocol,
    build_url,
    subprotocols,
)
from phonebridge.models.retry_gate import RetryGate
from phonebridge.models.wsclient import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_OPEN_TIMEOUT,
    Clock,
    WebSocketModelSession,
)


class PolarGridSession(WebSocketModelSession):
    """One conversation on PolarGrid; billed by wall-clock while the socket is open."""

    provider = "polargrid"
    supports_end_of_turn = True
    supports_text_injection = True

    def __init__(
        self,
        request: SessionRequest,
        *,
        api_key: str,
        region: str = DEFAULT_REGION,
        base_url: str | None = None,
        auth: AuthMode = "subprotocol",
        clock: Clock = time.monotonic,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        opus_complexity: int | None = None,
        logger: logging.Logger | None = None,
        retry_gate: RetryGate | None = None,
        wall_clock: Clock = time.time,
    ) -> None:
        self._pg = PolarGridProtocol(complexity=opus_complexity, sample_rate=request.sample_rate)
        super().__init__(
            url=build_url(request, region=region, base_url=base_url, api_key=api_key, auth=auth),
            protocol=self._pg,
            clock=clock,
            handshake_timeout=handshake_timeout,
            open_timeout=open_timeout,
            close_timeout=close_timeout,
            subprotocols=subprotocols(api_key, auth),
            secrets=(api_key,),
            logger=logger,
            retry_gate=retry_gate,
            wall_clock=wall_clock,
        )

    async def end_of_turn(self) -> None:
        """Send ``0x03 eos``: the caller finished a turn, the agent completes its reply."""
        if self._live():
            await self._send_frames(self._pg.control_frame("eos"))

    async def inject_text(self, text: str) -> None:
        """Send ``0x02`` text into the conversation."""
        if self._live():
            await self._send_frames(self._pg.text_frame(text))
