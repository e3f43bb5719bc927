"""The whole call path against the hosted providers, through their endpoint settings (issue 18).

A real ``phonebridge serve`` subprocess, configured only from the environment
(``POLARGRID_BASE_URL`` and ``FAL_BASE_URL`` point it at the loopback
PolarGrid and fal simulators, test doubles), takes Twilio calls from the phone
simulator: one that overflows from the self-hosted server to PolarGrid, one
that overflows to fal, and one whose persona's provider is PolarGrid. Each
call must show, on the simulator's record of the model socket:

- it closed within 100 ms of the caller's ``stop`` (hosted PersonaPlex bills
  by wall-clock while it is open): the issue's bound, measured on one clock,
  since the phone and the simulators share this test's event loop;
- silence fill: the caller sends no media for a second, and the model's input
  keeps coming every step through the gap;
- no audio before the handshake: PolarGrid conditions for 0.6 s while the
  caller already talks, and reads nothing before its ``0x00`` (fal has no
  handshake byte: an open socket is a ready model, §4).

Then ``Retry-After`` end to end (in-process bridge, as the other fault tests):
a 429 whose header is an HTTP date keeps calls off PolarGrid until that date,
and a date already past keeps nobody waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

from phonebridge.local import (
    DEMO_AUTH_TOKEN,
    DEMO_FAL_KEY,
    DEMO_POLARGRID_KEY,
    PUBLIC_URL,
    LocalBridge,
    SimulatorOptions,
)
from phonebridge.simulators.personaplex import PersonaPlexSimulator
from phonebridge.simulators.personaplex.records import ConnectionRecord
from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.phone.report import DialReport

from .conftest import BridgeFactory, ServeProcess, record_of, serve_process, tone_mulaw

SHAKSHUKA = "+14165550102"  # personaplex, no overflow: holds the only self-hosted server
CITYSAN = "+14165550101"  # personaplex, overflow polargrid
AERORENTALS = "+14165550103"  # personaplex, overflow fal
POLAR_DESK = "+14165550182"  # written below: polargrid, overflow fal

CONDITIONING = 0.6  # PolarGrid's conditioning: the caller talks through it
AUDIO_SECONDS = 2.0
GAP = (0.8, 1.0)  # (start, seconds): the caller's line carries no media at all
TAIL = 0.2
STOP_TO_CLOSE_LIMIT = 0.1  # the bound from the caller's stop to the model socket closed


def write_polar_desk(personas: Path) -> None:
    """A persona whose provider is PolarGrid (fal as its overflow)."""
    (personas / "polardesk.yaml").write_text(
        "\n".join(
            [
                "name: Polar desk",
                f'numbers: ["{POLAR_DESK}"]',
                "provider: polargrid",
                "overflow: fal",
                "voice: NATF1",
                "prompt: You answer the phone for a test desk.",
                "fallback:",
                '  say: "The polar desk is having trouble; please call back."',
                'busy_message: "The polar desk is busy."',
            ]
        )
        + "\n"
    )


@dataclass(slots=True)
class Hosted:
    """A running `phonebridge serve` and the simulators it was pointed at."""

    serve: ServeProcess
    self_hosted: PersonaPlexSimulator
    polargrid: PersonaPlexSimulator
    fal: PersonaPlexSimulator


@contextlib.asynccontextmanager
async def hosted_serve(tmp_path: Path) -> AsyncIterator[Hosted]:
    async with (
        PersonaPlexSimulator(flavour="self-hosted", reply="echo") as self_hosted,
        PersonaPlexSimulator(
            flavour="polargrid",
            reply="echo",
            conditioning_delay=CONDITIONING,
            api_key=DEMO_POLARGRID_KEY,
        ) as polargrid,
        PersonaPlexSimulator(flavour="fal", reply="echo", api_key=DEMO_FAL_KEY) as fal,
    ):
        base = serve_process(tmp_path, self_hosted.url)
        env = base.env | {
            "POLARGRID_API_KEY": DEMO_POLARGRID_KEY,
            "POLARGRID_BASE_URL": polargrid.url,  # ws:// is allowed: a loopback host
            "FAL_KEY": DEMO_FAL_KEY,
            "FAL_BASE_URL": fal.url,
            # Answer at once: these tests are about the caller's audio while the
            # hosted model conditions (nothing before its handshake, silence fill).
            "PHONEBRIDGE_ANSWER_WITHIN_SECONDS": "0",
        }
        write_polar_desk(Path(env["PHONEBRIDGE_PERSONAS"]))
        serve = ServeProcess(env, base.port, base.data)
        process = await serve.start()
        try:
            yield Hosted(serve, self_hosted, polargrid, fal)
        finally:
            process.terminate()
            async with asyncio.timeout(30):
                await process.wait()


async def place_call(
    serve: ServeProcess, to: str, from_: str, audio: bytes
) -> tuple[DialReport, float]:
    """Dial as Twilio would; returns the report and when the caller sent ``stop`` (loop time)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(30):
        dialled_at = loop.time()  # the phone's own clock starts here (same loop, same tick)
        report = await dial(
            serve.url,
            to=to,
            from_=from_,
            auth_token=DEMO_AUTH_TOKEN,
            public_url=PUBLIC_URL,
            audio=audio,
            gaps=[GAP],
            tail=TAIL,
        )
    assert report.ok, report.protocol_errors
    assert report.ended_by == "caller"
    assert report.ended_at_s is not None
    # ended_at_s is taken just before the stop goes out, counted from a start no
    # earlier than dialled_at: this is at or before the real stop (never flatters).
    return report, dialled_at + report.ended_at_s


async def overflowing_call(hosted: Hosted, to: str) -> tuple[DialReport, float]:
    """Hold the only self-hosted server with another call, then call ``to``."""
    holder = asyncio.create_task(
        place_call(hosted.serve, SHAKSHUKA, "+15005550001", tone_mulaw(AUDIO_SECONDS + 1.5))
    )
    async with asyncio.timeout(10):
        await hosted.self_hosted.wait_for_connections(1)
    try:
        return await place_call(hosted.serve, to, "+15005550002", tone_mulaw(AUDIO_SECONDS))
    finally:
        holder_report, _ = await holder
        assert holder_report.frames_received > 0


async def model_socket_of(sim: PersonaPlexSimulator) -> ConnectionRecord:
    assert len(sim.connections) == 1
    async with asyncio.timeout(5):
        return await sim.wait_for_close(0)


def closed_at_once_after_stop(model: ConnectionRecord, stopped_at: float) -> None:
    assert model.closed_at is not None
    assert model.end == "client closed"  # the bridge closed it; the server did not give up
    after_stop = model.closed_at - stopped_at
    assert 0.0 <= after_stop < STOP_TO_CLOSE_LIMIT, (
        f"model socket closed {after_stop:.3f} s after stop"
    )


def fed_through_the_gap(model: ConnectionRecord) -> None:
    # The caller was silent for a whole second; the model's input never was.
    assert model.max_input_gap < GAP[1] / 2, model.max_input_gap
    # The live part of the call (from the model's readiness to the stop) was
    # well over a second; without silence fill a second of it would be missing.
    live = AUDIO_SECONDS + TAIL - CONDITIONING
    assert model.input_samples >= 24_000 * (live - 0.4), model.input_samples


def nothing_before_the_handshake(model: ConnectionRecord, report: DialReport) -> None:
    assert model.handshake_at is not None
    assert model.pre_handshake_messages == 0
    assert model.bos_pages == 1  # and the stream began with its BOS page, once
    # The caller was talking while PolarGrid conditioned: the model's first
    # reply (an echo, so after the handshake) came well after the stream began.
    assert report.first_agent_audio_after_start_s is not None
    assert report.first_agent_audio_after_start_s > CONDITIONING / 2


async def test_a_call_overflowing_to_polargrid(tmp_path: Path) -> None:
    async with hosted_serve(tmp_path) as hosted:
        report, stopped_at = await overflowing_call(hosted, CITYSAN)
        model = await model_socket_of(hosted.polargrid)
        record = await hosted.serve.record(report.call_sid)
    closed_at_once_after_stop(model, stopped_at)
    fed_through_the_gap(model)
    nothing_before_the_handshake(model, report)
    assert model.subprotocols == (f"bearer.{DEMO_POLARGRID_KEY}",)  # key in the header
    assert "token" not in model.query
    assert report.frames_received > 0
    assert hosted.fal.connections == []
    assert record is not None
    assert (record.provider, record.end_reason) == ("polargrid", "caller_hangup")


async def test_a_call_overflowing_to_fal(tmp_path: Path) -> None:
    async with hosted_serve(tmp_path) as hosted:
        report, stopped_at = await overflowing_call(hosted, AERORENTALS)
        model = await model_socket_of(hosted.fal)
        record = await hosted.serve.record(report.call_sid)
    closed_at_once_after_stop(model, stopped_at)
    fed_through_the_gap(model)
    # fal has no handshake byte: ready is the open socket, so nothing can
    # precede it; what matters is that every message carried the full config.
    assert model.pre_handshake_messages == 0
    assert model.fal_configs_incomplete == 0
    assert report.frames_received > 0
    assert hosted.polargrid.connections == []
    assert record is not None
    assert (record.provider, record.end_reason) == ("fal", "caller_hangup")


async def test_a_persona_whose_provider_is_polargrid(tmp_path: Path) -> None:
    async with hosted_serve(tmp_path) as hosted:
        report, stopped_at = await place_call(
            hosted.serve, POLAR_DESK, "+15005550003", tone_mulaw(AUDIO_SECONDS)
        )
        model = await model_socket_of(hosted.polargrid)
        record = await hosted.serve.record(report.call_sid)
    closed_at_once_after_stop(model, stopped_at)
    fed_through_the_gap(model)
    nothing_before_the_handshake(model, report)
    assert model.query["voice"] == ["NATF1"]
    assert model.query["persona"] == ["You answer the phone for a test desk."]
    assert hosted.self_hosted.connections == []  # never touched the self-hosted pool
    assert record is not None
    assert (record.persona, record.provider) == ("polardesk", "polargrid")


# -- Retry-After as an HTTP date, end to end -----------------------------------------------


async def short_call(bridge: LocalBridge, caller: str) -> DialReport:
    async with asyncio.timeout(30):
        return await dial(
            bridge.url,
            to=POLAR_DESK,
            from_=caller,
            auth_token=DEMO_AUTH_TOKEN,
            public_url=bridge.public_url,
            audio=tone_mulaw(0.3),
            tail=0.1,
        )


def rate_limited_polargrid(retry_after: str) -> SimulatorOptions:
    return SimulatorOptions(
        reply="echo",
        conditioning_delay=0.05,
        polargrid_extra={"reject_status": 429, "retry_after": retry_after},
    )


async def test_a_dated_retry_after_keeps_calls_off_polargrid_until_that_date(
    start_bridge: BridgeFactory, personas_dir: Path
) -> None:
    write_polar_desk(personas_dir)
    # A whole second (HTTP dates have no fractions) at least 3 s ahead; the
    # bridge reads it against its wall clock, the same one as ours.
    until = math.ceil(time.time()) + 4
    async with start_bridge(
        simulators=rate_limited_polargrid(formatdate(until, usegmt=True))
    ) as bridge:
        first = await short_call(bridge, "+15005550011")
        second = await short_call(bridge, "+15005550012")
        assert time.time() < until - 0.5, "the calls were too slow to test the wait"
        for report in (first, second):
            assert report.frames_received > 0  # overflowed to fal: the caller was answered
            assert (await record_of(bridge, report.call_sid)).provider == "fal"
        assert bridge.polargrid.rejected == [429]  # the second call did not knock again
        bridge.polargrid.reject_status = None  # PolarGrid recovers
        await asyncio.sleep(until - time.time() + 0.05)  # the date has come
        third = await short_call(bridge, "+15005550013")
        assert third.frames_received > 0
        assert (await record_of(bridge, third.call_sid)).provider == "polargrid"
        assert bridge.polargrid.rejected == [429]


async def test_a_retry_after_date_already_past_keeps_nobody_waiting(
    start_bridge: BridgeFactory, personas_dir: Path
) -> None:
    write_polar_desk(personas_dir)
    past = formatdate(time.time() - 3600, usegmt=True)
    async with start_bridge(simulators=rate_limited_polargrid(past)) as bridge:
        for caller in ("+15005550021", "+15005550022"):
            report = await short_call(bridge, caller)
            assert (await record_of(bridge, report.call_sid)).provider == "fal"
        # No wait was asked (not even the 5 s default for an unreadable header):
        # the second call asked PolarGrid again, at once.
        assert bridge.polargrid.rejected == [429, 429]
        bridge.polargrid.reject_status = None
        third = await short_call(bridge, "+15005550023")
        assert (await record_of(bridge, third.call_sid)).provider == "polargrid"
