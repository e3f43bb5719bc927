"""A PersonaPlex server simulator: self-hosted, PolarGrid or fal flavour. TEST DOUBLE.

It speaks the wire protocols of PROTOCOLS.md §2 (self-hosted ``moshi.server``),
§3 (PolarGrid) and §4 (fal) closely enough to catch every client mistake the
real servers punish, but it is not a model: it echoes, stays silent, or plays
canned espeak-ng clips. Use it in tests and demos, never as a provider.

In-process::

    async with PersonaPlexSimulator(flavour="self-hosted", reply="echo",
                                    conditioning_delay=0.05, port=0) as sim:
        sim.url            # ws://127.0.0.1:<port>
        sim.connections    # ConnectionRecord per upgrade: what the server observed

Upgrade-level behaviour (``process_request``): wrong path -> 404; PolarGrid
checks the ``bearer.<key>`` subprotocol or ``token=`` (401 on a bad key),
fal checks ``Authorization: Key <key>`` (401); ``reject_status`` refuses
every upgrade with that status (429 carries ``Retry-After``: ``retry_after``
seconds, or a string sent as is, e.g. an HTTP date). The self-hosted
flavour serves one session at a time (§2.5): a second connection is
upgraded and then hangs silently until the first ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Final, Literal, Self
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from phonebridge.simulators.personaplex.fal_session import run_fal_session
from phonebridge.simulators.personaplex.ogg_session import Faults, run_ogg_session
from phonebridge.simulators.personaplex.records import ConnectionRecord
from phonebridge.simulators.personaplex.replies import ReplyMode

Flavour = Literal["self-hosted", "polargrid", "fal"]
FLAVOURS: Final[tuple[Flavour, ...]] = ("self-hosted", "polargrid", "fal")
PATHS: Final[dict[Flavour, str]] = {
    "self-hosted": "/api/chat",
    "polargrid": "/v1/voice/personaplex",
    "fal": "/fal-ai/personaplex/realtime",
}
BEARER: Final[str] = "bearer."


class PersonaPlexSimulator:
    """An in-process PersonaPlex-protocol server on loopback (TEST DOUBLE)."""

    def __init__(
        self,
        *,
        flavour: Flavour = "self-hosted",
        reply: ReplyMode = "echo",
        conditioning_delay: float = 0.05,
        port: int = 0,
        host: str = "127.0.0.1",
        api_key: str | None = None,
        reject_status: int | None = None,
        retry_after: int | str = 7,
        idle_timeout: float = 5.0,
        never_handshake: bool = False,
        close_during_conditioning: bool = False,
        die_after: float | None = None,
        stall_after: float | None = None,
        fal_timeout_after: float | None = None,
        keep_input_seconds: float = 0.0,
    ) -> None:
        if flavour not in FLAVOURS:
            raise ValueError(f"unknown flavour {flavour!r}")
        self.flavour: Flavour = flavour
        self.reply: ReplyMode = reply
        self.conditioning_delay = conditioning_delay
        self.host = host
        self.port = port
        self.api_key = api_key  # None: any non-empty key is accepted
        self.reject_status = reject_status
        self.retry_after = retry_after
        self.idle_timeout = idle_timeout
        self.faults = Faults(
            never_handshake=never_handshake,
            close_during_conditioning=close_during_conditioning,
            die_after=die_after,
            stall_after=stall_after,
            fal_timeout_after=fal_timeout_after,
        )
        # Each connection keeps this much decoded input (24 kHz) for tests to inspect.
        self.keep_input_bytes = int(keep_input_seconds * 24000) * 2
        self.connections: list[ConnectionRecord] = []
        self.rejected: list[int] = []  # statuses of refused upgrades
        self._server: Server | None = None
        self._lock: asyncio.Lock | None = None
        self._connected = asyncio.Condition()

    @property
    def url(self) -> str:
        """``ws://host:port``: the base URL clients append their path to."""
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        self._lock = asyncio.Lock() if self.flavour == "self-hosted" else None
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            compression=None,
            ping_interval=None,  # neither server sends pings (§2.2, §3)
            close_timeout=1.0,
            max_size=2**20,
            # Its own logger: upgrade headers (keys included) are logged at DEBUG.
            logger=logging.getLogger(__name__),
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def serve_forever(self) -> None:
        """Run until cancelled (the CLI)."""
        await self.start()
        try:
            await asyncio.Future()
        finally:
            await self.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def second_connections(self) -> list[ConnectionRecord]:
        """Connections upgraded while another session held this self-hosted server.

        Each one is a failure of whoever connected: the real server loads a new
        connection's prompts into its one shared model state *before* waiting
        for its session lock (PROTOCOLS.md §2.1), so the caller already talking
        would have their persona swapped. Leases exist so this list stays empty.
        """
        return [record for record in self.connections if record.waited_behind_busy]

    async def wait_for_connections(self, count: int) -> None:
        """Wait until ``count`` connections were accepted (a test helper; bound it yourself)."""
        async with self._connected:
            await self._connected.wait_for(lambda: len(self.connections) >= count)

    async def wait_for_close(self, index: int = 0) -> ConnectionRecord:
        """Wait until connection ``index`` has ended server-side; returns its record."""
        async with self._connected:
            await self._connected.wait_for(
                lambda: (
                    len(self.connections) > index and self.connections[index].closed_at is not None
                )
            )
        return self.connections[index]

    # -- upgrade --------------------------------------------------------------

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if self.reject_status is not None:
            return self._reject(ws, self.reject_status, "simulated refusal")
        if parts.path != PATHS[self.flavour]:
            return self._reject(ws, 404, "not found")
        if self.flavour == "polargrid" and not self._key_ok(self._polargrid_key(request)):
            return self._reject(ws, 401, "invalid or expired token")
        if self.flavour == "fal":
            auth = request.headers.get("Authorization", "")
            key = auth[4:] if auth.startswith("Key ") else None
            if not self._key_ok(key):
                return self._reject(ws, 401, "unauthorized")
        return None

    def _reject(self, ws: ServerConnection, status: int, text: str) -> Response:
        self.rejected.append(status)
        response = ws.respond(status, text + "\n")
        if status == 429:
            response.headers["Retry-After"] = str(self.retry_after)
        return response

    def _key_ok(self, key: str | None) -> bool:
        if not key:
            return False
        return self.api_key is None or key == self.api_key

    @staticmethod
    def _polargrid_key(request: Request) -> str | None:
        for value in request.headers.get_all("Sec-WebSocket-Protocol"):
            for raw in value.split(","):
                offered = raw.strip()
                if offered.startswith(BEARER):
                    return offered[len(BEARER) :]
        token = parse_qs(urlsplit(request.path).query).get("token")
        return token[0] if token else None

    def _select_subprotocol(
        self, ws: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        # PolarGrid echoes the bearer subprotocol, as browsers require.
        for subprotocol in offered:
            if subprotocol.startswith(BEARER):
                return subprotocol
        return None

    # -- sessions -------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        parts = urlsplit(request.path)
        loop = asyncio.get_running_loop()
        record = ConnectionRecord(
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            subprotocols=tuple(
                s.strip()
                for value in request.headers.get_all("Sec-WebSocket-Protocol")
                for s in value.split(",")
            ),
            opened_at=loop.time(),
            keep_input_bytes=self.keep_input_bytes,
        )
        self.connections.append(record)
        async with self._connected:
            self._connected.notify_all()
        try:
            if self.flavour == "fal":
                await run_fal_session(
                    ws, record, reply=self.reply, idle_timeout=self.idle_timeout, faults=self.faults
                )
            else:
                await run_ogg_session(
                    ws,
                    record,
                    reply=self.reply,
                    conditioning_delay=self.conditioning_delay,
                    faults=self.faults,
                    polargrid=self.flavour == "polargrid",
                    lock=self._lock,
                )
        finally:
            record.closed_at = loop.time()
            async with self._connected:
                self._connected.notify_all()
