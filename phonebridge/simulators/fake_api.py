"""TEST DOUBLE scaffolding: what every fake carrier REST API on loopback shares.

The fake Twilio, SignalWire, Telnyx, Plivo, Vonage and Exotel APIs
(simulators/*_api.py) differ in their routes, bodies, signatures and call
lives; they share what is here, written once:

- :class:`LoopbackFakeApi`: the server's life (``async with api:`` serves the
  subclass's routes on a free loopback port, ``api.url``), the created calls
  and their tasks (one per call, cancelled on exit; :meth:`~LoopbackFakeApi.wait_ended`),
  the callees by number, the bridge's routes, the request log, and the
  callback POST to the bridge;
- :class:`Callee`: how a dialled number answers;
- :func:`callee_audio` and :func:`callee_phone`: the answering callee's
  audio and its phone simulator (:class:`~.phone.carriers.base.CarrierCall`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, Self, TypeVar

import httpx
import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import BaseRoute

from phonebridge.simulators.loopback import LoopbackServer
from phonebridge.simulators.phone.carriers.base import CarrierCall, CarrierFlavour
from phonebridge.simulators.phone.report import DialReport
from phonebridge.simulators.phone.routes import Routes

CalleeKind = Literal["human", "machine", "no-answer", "busy", "failed"]
RATE = 16_000  # the callee's leg; each carrier's stream narrows it as its set-up asks
BEEP = 0.3  # seconds of the answering machine's beep
MACHINE_RECORDS = 20.0  # a machine records until it times out: the call ends first


@dataclass(frozen=True, slots=True)
class Callee:
    """How the number answers."""

    kind: CalleeKind = "human"
    ring: float = 0.05  # seconds of ringing before the answer (or the busy/failed verdict)
    talk: float = 1.0  # a person: seconds on the line before hanging up
    dtmf: tuple[tuple[float, str], ...] = ()  # a person: keys pressed (time, digits)
    greeting: float = 0.6  # a machine: seconds of greeting before the beep


def tone(seconds: float, freq: float, level: float = 0.3, rate: int = RATE) -> bytes:
    """A sine as 16-bit little-endian PCM."""
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * level * 32767).astype("<i2").tobytes()


def callee_audio(
    callee: Callee, rate: int = RATE, *, machine_records: float = MACHINE_RECORDS
) -> tuple[bytes, float]:
    """What the callee says (PCM16 at ``rate``) and when it hangs up: a person talks
    for ``talk`` seconds; a machine plays its greeting and a beep, then records for
    ``machine_records`` seconds from the greeting's end."""
    if callee.kind == "human":
        return tone(callee.talk, 440.0, rate=rate), callee.talk
    greeting = tone(callee.greeting, 300.0, rate=rate) + tone(BEEP, 1000.0, 0.6, rate=rate)
    return greeting, callee.greeting + machine_records


def callee_phone(
    flavour: CarrierFlavour,
    callee: Callee,
    routes: Routes,
    report: DialReport,
    *,
    send_stop: bool = True,
    machine_records: float = MACHINE_RECORDS,
) -> CarrierCall:
    """The callee's phone on an answered call, run by the carrier's phone simulator."""
    audio, hangup_after = callee_audio(callee, machine_records=machine_records)
    return CarrierCall(
        flavour,
        routes=routes,
        report=report,
        rate=RATE,
        pcm16=audio,
        fast=False,
        gaps=(),
        dtmf=callee.dtmf,
        hangup_after=hangup_after,
        send_stop=send_stop,
        tail=2.0,
        max_call=120.0,
        timeout=10.0,
    )


@contextlib.asynccontextmanager
async def alongside(work: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run ``work`` (machine detection) while the block runs the call; cancel it after."""
    task = asyncio.create_task(work)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


CallT = TypeVar("CallT")


class LoopbackFakeApi(Generic[CallT]):
    """A fake carrier API: ``async with Sub(...) as api:`` serves :meth:`routes` at ``api.url``.

    A subclass answers creates by building its call record and calling
    :meth:`start_call` with the coroutine that lives the call.
    """

    def __init__(
        self,
        *,
        bridge_public_url: str,
        bridge_local_url: str,
        callees: dict[str, Callee] | None = None,
    ) -> None:
        self.routes = Routes(bridge_public_url, bridge_local_url)
        self.callees = callees or {}
        self.calls: dict[str, CallT] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every API request
        self.url = ""
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._server = LoopbackServer()

    @property
    def created(self) -> list[CallT]:
        return list(self.calls.values())

    def routes_served(self) -> list[BaseRoute]:
        raise NotImplementedError

    def callee(self, number: str) -> Callee:
        return self.callees.get(number, Callee())

    def note(self, request: Request) -> None:
        """Log an API request (method, path)."""
        self.requests.append((request.method, request.url.path))

    def start_call(self, call_id: str, call: CallT, life: Coroutine[Any, Any, None]) -> None:
        self.calls[call_id] = call
        self._tasks[call_id] = asyncio.create_task(life)

    async def stop_call(self, call_id: str) -> bool:
        """Cancel a call's life if it is still running (a hang-up while ringing)."""
        task = self._tasks.get(call_id)
        if task is None or task.done():
            return False
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True

    async def callback(
        self,
        url: str,
        headers: Mapping[str, str],
        *,
        data: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> int | None:
        """POST to the bridge (a public URL is sent to its local address): the status, or
        None when it could not be reached."""
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                response = await http.post(
                    self.routes.http(url), data=data, content=content, headers=headers
                )
        except httpx.HTTPError:
            return None
        return response.status_code

    async def __aenter__(self) -> Self:
        await self._server.start(Starlette(routes=self.routes_served()))
        self.url = self._server.url
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        await self._server.stop()

    async def wait_ended(self) -> None:
        """Until every call created so far has run to its end."""
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
