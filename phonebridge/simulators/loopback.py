"""An ASGI app served by uvicorn on 127.0.0.1, inside the running event loop.

The simulators' HTTP doubles (the fake carrier REST APIs, the phone's fake
in-call control API) all start and stop a server the same way; this is that way,
once. Port 0 picks a free port (parallel test workers never collide); the CLI
passes a fixed one. uvicorn's signal capture is switched off: in-process, the
owner (a test, the phone CLI) keeps SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn
from starlette.types import ASGIApp

STOP_SECONDS = 10.0  # how long a stop waits for uvicorn to finish its connections


class LoopbackServer:
    """``await server.start(app)`` … ``await server.stop()``; ``server.url`` in between."""

    def __init__(self) -> None:
        self.port = 0
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, app: ASGIApp, port: int = 0) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        server = self._server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        self._task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if self._task.done():
                await self._task  # re-raise why it could not start
                raise RuntimeError("the loopback server stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, STOP_SECONDS)
        if self._socket is not None:
            self._socket.close()
