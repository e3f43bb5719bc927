"""Thin websockets client for fal.ai's ``fal-ai/personaplex/realtime`` (PROTOCOLS.md §4).

Server-side auth is the ``Authorization: Key <FAL_KEY>`` upgrade header (the
key is passed in; ``phonebridge.config`` reads ``FAL_KEY``). fal has no
handshake byte: ready means the socket is open, so ``handshake_timeout`` does
not apply, and ``open_timeout`` defaults high because cold starts of ~20 s
have been reported.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from phonebridge.errors import LocalProtocolError
from phonebridge.models.base import SessionRequest
from phonebridge.models.fal_protocol import (
    DEFAULT_BASE_URL,
    FalConfig,
    FalProtocol,
    auth_headers,
    build_url,
    config_for,
)
from phonebridge.models.retry_gate import RetryGate
from phonebridge.models.wsclient import DEFAULT_CLOSE_TIMEOUT, Clock, WebSocketModelSession

DEFAULT_FAL_OPEN_TIMEOUT: Final[float] = 45.0


class FalSession(WebSocketModelSession):
    """One fal realtime conversation; raw PCM in msgpack, no Opus."""

    provider = "fal"
    supports_end_of_turn = False
    supports_text_injection = False

    def __init__(
        self,
        request: SessionRequest,
        *,
        api_key: str,
        config: FalConfig | None = None,
        base_url: str = DEFAULT_BASE_URL,
        clock: Clock = time.monotonic,
        open_timeout: float = DEFAULT_FAL_OPEN_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        logger: logging.Logger | None = None,
        retry_gate: RetryGate | None = None,
        wall_clock: Clock = time.time,
    ) -> None:
        config = config or config_for(request)
        super().__init__(
            url=build_url(base_url),
            protocol=FalProtocol(config, sample_rate=request.sample_rate),
            clock=clock,
            handshake_timeout=None,
            open_timeout=open_timeout,
            close_timeout=close_timeout,
            headers=auth_headers(api_key),
            secrets=(api_key,),
            logger=logger,
            retry_gate=retry_gate,
            wall_clock=wall_clock,
        )

    async def end_of_turn(self) -> None:
        raise LocalProtocolError("fal's realtime endpoint has no end-of-turn control (§4)")

    async def inject_text(self, text: str) -> None:
        raise LocalProtocolError("fal's realtime endpoint has no text injection (§4)")
