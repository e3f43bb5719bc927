"""Model-side faults end to end (issue 8): each one has a defined outcome.

The real bridge runs on loopback against PersonaPlex simulators with their
fault knobs. Whatever the model does, the issue asks for the same things:
the caller hears the persona's fallback (or busy message, or the overflow
provider) rather than dead air, the model socket is closed, the lease is
released, the call row records the end reason, and the process keeps serving:
every test ends with a normal call and :func:`assert_no_leaks`.

The shipped personas route the self-hosted pool (citysan overflows to
PolarGrid, aerorentals to fal, shakshuka has no overflow); the two *desk*
personas written below make the hosted providers primary, with a one-second
stall limit so the stall tests stay quick.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

from phonebridge.local import DEMO_AUTH_TOKEN, LocalBridge, SimulatorOptions
from phonebridge.personas.loader import load_personas
from phonebridge.personas.schema import Persona
from phonebridge.simulators.personaplex.ogg_session import Faults
from phonebridge.simulators.personaplex.server import PersonaPlexSimulator
from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.phone.report import DialReport
from phonebridge.storage.models import CallRecord

from .conftest import BridgeFactory, record_of, tone_mulaw
from .leaks import assert_no_leaks, baseline, bridge_of

CITYSAN = "+14165550101"  # personaplex, overflow polargrid; fallback transfers to the office
SHAKSHUKA = "+14165550102"  # personaplex, no overflow
AERORENTALS = "+14165550103"  # personaplex, overflow fal
PLEX_DESK = "+14165550181"  # personaplex, no overflow, 1 s stall limit
POLAR_DESK = "+14165550182"  # polargrid, overflow fal, 1 s stall limit
FAL_DESK = "+14165550183"  # fal, no overflow, 1 s stall limit

DESKS = {
    "plexdesk": (PLEX_DESK, "personaplex", None),
    "polardesk": (POLAR_DESK, "polargrid", "fal"),
    "faldesk": (FAL_DESK, "fal", None),
}
# One caller number per call: the toll-fraud guard limits calls per caller.
CALLERS = (f"+1500555{n:04d}" for n in itertools.count(1000))


@pytest.fixture(autouse=True)
def desks(personas_dir: Path) -> None:
    """Personas whose primary provider is hosted, written before the bridge starts."""
    for persona_id, (number, provider, overflow) in DESKS.items():
        lines = [
            f"name: {persona_id}",
            f'numbers: ["{number}"]',
            f"provider: {provider}",
            *([f"overflow: {overflow}"] if overflow else []),
            "voice: NATF1",
            "prompt: You answer the phone for a test desk.",
            "limits:",
            "  model_stall_seconds: 1",
            "fallback:",
            f'  say: "{persona_id} is having trouble; please call back."',
            f'busy_message: "{persona_id} is busy."',
        ]
        (personas_dir / f"{persona_id}.yaml").write_text("\n".join(lines) + "\n")


def options(**knobs: Any) -> SimulatorOptions:
    """Fast echo simulators with fault knobs (``extra``, ``polargrid_extra``, ...)."""
    return SimulatorOptions(reply="echo", conditioning_delay=0.05, **knobs)


async def call(bridge: LocalBridge, to: str, **kwargs: object) -> DialReport:
    kwargs.setdefault("audio", tone_mulaw(0.8))
    kwargs.setdefault("tail", 0.2)
    kwargs.setdefault("from_", next(CALLERS))
    async with asyncio.timeout(30):
        return await dial(
            bridge.url,
            to=to,
            auth_token=DEMO_AUTH_TOKEN,
            public_url=bridge.public_url,
            **kwargs,  # type: ignore[arg-type]
        )


def persona(bridge: LocalBridge, persona_id: str) -> Persona:
    found = load_personas(bridge.settings.personas_dir).by_id(persona_id)
    assert found is not None
    return found


def heal(bridge: LocalBridge) -> None:
    """The fault is over: every simulator behaves again (a lease may still be resting)."""
    for sim in (*bridge.self_hosted, bridge.polargrid, bridge.fal):
        sim.faults = Faults()
        sim.reject_status = None


async def closed(sim: PersonaPlexSimulator, index: int = -1) -> None:
    """The simulator saw connection ``index`` end: the bridge closed (or lost) the socket."""
    position = index % len(sim.connections)
    async with asyncio.timeout(5):
        record = await sim.wait_for_close(position)
    assert record.closed_at is not None


async def heard_fallback(
    bridge: LocalBridge, report: DialReport, persona_id: str, reason: str
) -> CallRecord:
    """The bridge ended the stream; Twilio asked the action URL and got the apology."""
    expected = persona(bridge, persona_id).fallback
    assert report.ended_by == "bridge", report
    assert report.action_status == 200
    assert report.twiml_answers[-1] == report.action_answer
    assert report.said[-1] == expected.say
    if expected.transfer_to is not None:
        assert report.dialled[-1] == expected.transfer_to
    record: CallRecord = await record_of(bridge, report.call_sid)
    assert record.end_reason == reason
    assert record.ended_by == "model"
    return record


async def keeps_serving(bridge: LocalBridge, to: str = SHAKSHUKA) -> CallRecord:
    """A normal call right after the fault is answered and hears the model."""
    heal(bridge)
    report = await call(bridge, to, audio=tone_mulaw(0.4))
    assert report.frames_received > 0
    record: CallRecord = await record_of(bridge, report.call_sid)
    assert record.end_reason == "caller_hangup"
    return record


async def occupy_every_server(
    bridge: LocalBridge, seconds: float
) -> list[asyncio.Task[DialReport]]:
    """Calls that hold every self-hosted lease for ``seconds``."""
    calls = []
    for count, sim in enumerate(bridge.self_hosted, start=1):
        calls.append(asyncio.create_task(call(bridge, SHAKSHUKA, audio=tone_mulaw(seconds))))
        async with asyncio.timeout(10):
            await sim.wait_for_connections(1)
        assert bridge_of(bridge).admission.pool.in_use == count
    return calls


# -- self-hosted: no handshake, closed while conditioning ---------------------------


@pytest.mark.parametrize(("to", "persona_id"), [(CITYSAN, "citysan"), (SHAKSHUKA, "shakshuka")])
async def test_server_that_never_hand_shakes_is_rested(
    start_bridge: BridgeFactory, to: str, persona_id: str
) -> None:
    """No 0x00: with overflow the caller talks to PolarGrid, without it hears the fallback."""
    knobs = options(extra={"never_handshake": True}, self_hosted_servers=2)
    async with start_bridge(simulators=knobs, personaplex_handshake_timeout=0.3) as bridge:
        before = baseline(bridge)
        report = await call(bridge, to)
        hung = bridge.self_hosted[0]
        await closed(hung, 0)
        if persona(bridge, persona_id).overflow is not None:
            assert report.frames_received > 0
            record = await record_of(bridge, report.call_sid)
            assert record.provider == "polargrid"
            assert record.end_reason == "caller_hangup"
        else:
            record = await heard_fallback(bridge, report, persona_id, "model_failed")
            assert "no handshake" in (record.error or "")
        # The hung server is rested: the next call goes to the other one.
        await keeps_serving(bridge)
        assert len(hung.connections) == 1
        assert len(bridge.self_hosted[1].connections) == 1
        await assert_no_leaks(bridge, before)


@pytest.mark.parametrize(("to", "persona_id"), [(CITYSAN, "citysan"), (SHAKSHUKA, "shakshuka")])
async def test_server_closing_during_conditioning(
    start_bridge: BridgeFactory, to: str, persona_id: str
) -> None:
    """The handler crashes before 0x00: overflow if the persona has one, else the fallback."""
    knobs = SimulatorOptions(
        reply="echo", conditioning_delay=0.2, extra={"close_during_conditioning": True}
    )
    async with start_bridge(simulators=knobs) as bridge:
        before = baseline(bridge)
        report = await call(bridge, to)
        await closed(bridge.self_hosted[0], 0)
        assert bridge.self_hosted[0].connections[0].end == "close_during_conditioning fault"
        if persona(bridge, persona_id).overflow is not None:
            assert report.frames_received > 0
            assert (await record_of(bridge, report.call_sid)).provider == "polargrid"
        else:
            await heard_fallback(bridge, report, persona_id, "model_failed")
        # A crashed handler frees the server (§2.5): it is not rested.
        assert (await keeps_serving(bridge)).provider == "personaplex"
        await assert_no_leaks(bridge, before)


# -- any provider: death and stalls mid-call -------------------------------------------

PROVIDERS = [
    pytest.param("extra", "self_hosted", CITYSAN, "citysan", id="self-hosted"),
    pytest.param("polargrid_extra", "polargrid", POLAR_DESK, "polardesk", id="polargrid"),
    pytest.param("fal_extra", "fal", FAL_DESK, "faldesk", id="fal"),
]


def simulator(bridge: LocalBridge, name: str) -> PersonaPlexSimulator:
    sim: PersonaPlexSimulator | list[PersonaPlexSimulator] = getattr(bridge, name)
    return sim[0] if isinstance(sim, list) else sim


@pytest.mark.parametrize(("knob", "sim_name", "to", "persona_id"), PROVIDERS)
async def test_model_dying_mid_call(
    start_bridge: BridgeFactory, knob: str, sim_name: str, to: str, persona_id: str
) -> None:
    """The socket drops (1006) half a second in: the caller hears the fallback."""
    async with start_bridge(simulators=options(**{knob: {"die_after": 0.5}})) as bridge:
        before = baseline(bridge)
        report = await call(bridge, to, audio=tone_mulaw(3.0))
        assert report.frames_received > 0  # the model spoke before it died
        record = await heard_fallback(bridge, report, persona_id, "model_ended")
        sim = simulator(bridge, sim_name)
        await closed(sim)
        assert sim.connections[-1].end == "die_after fault"
        assert record.provider == ("personaplex" if sim_name == "self_hosted" else sim_name)
        await keeps_serving(bridge)
        await assert_no_leaks(bridge, before)


STALLING = [
    pytest.param("extra", "self_hosted", PLEX_DESK, "plexdesk", id="self-hosted"),
    *PROVIDERS[1:],
]


@pytest.mark.parametrize(("knob", "sim_name", "to", "persona_id"), STALLING)
async def test_model_stalling_is_ended_with_the_fallback(
    start_bridge: BridgeFactory, knob: str, sim_name: str, to: str, persona_id: str
) -> None:
    """The socket stays open but the model goes quiet: the watchdog ends the call."""
    async with start_bridge(simulators=options(**{knob: {"stall_after": 0.2}})) as bridge:
        before = baseline(bridge)
        # The caller would talk for 6 s; the 1 s stall limit ends the call first.
        report = await call(bridge, to, audio=tone_mulaw(6.0))
        assert report.frames_received > 0  # it spoke before it stalled
        record = await heard_fallback(bridge, report, persona_id, "model_stalled")
        assert record.error == "no model output for 1 s"
        sim = simulator(bridge, sim_name)
        await closed(sim)
        stalled = sim.connections[-1]
        assert stalled.end == "client closed"  # the bridge hung up on it, not the server
        # The bridge kept feeding it right up to the end: not an idle client.
        assert stalled.input_samples > 24_000
        await keeps_serving(bridge)
        await assert_no_leaks(bridge, before)


async def test_stall_watchdog_waits_for_the_handshake(start_bridge: BridgeFactory) -> None:
    """Conditioning longer than the stall limit is not a stall: no output is expected yet."""
    slow = SimulatorOptions(reply="echo", conditioning_delay=1.6)
    async with start_bridge(simulators=slow) as bridge:
        before = baseline(bridge)
        report = await call(bridge, PLEX_DESK, audio=tone_mulaw(2.2))
        record = await record_of(bridge, report.call_sid)
        assert record.end_reason == "caller_hangup"
        assert report.frames_received > 0
        model = bridge.self_hosted[0].connections[0]
        assert model.handshake_at is not None
        assert model.handshake_at - model.opened_at >= 1.6  # longer than the 1 s limit
        await assert_no_leaks(bridge, before)


# -- hosted providers: refused upgrades, fal TIMEOUT ---------------------------------------


@pytest.mark.parametrize("status", [401, 402, 429, 502])
async def test_polargrid_refusing_the_upgrade(start_bridge: BridgeFactory, status: int) -> None:
    """Account errors (401/402) are not retried; 429 and 502 overflow to fal."""
    knobs = options(polargrid_extra={"reject_status": status, "retry_after": 7})
    async with start_bridge(simulators=knobs) as bridge:
        before = baseline(bridge)
        report = await call(bridge, POLAR_DESK)
        assert bridge.polargrid.rejected == [status]
        assert bridge.polargrid.connections == []  # refused at the upgrade: no socket
        if status in (401, 402):
            record = await heard_fallback(bridge, report, "polardesk", "model_failed")
            assert f"HTTP {status}" in (record.error or "")
            assert bridge.fal.connections == []  # a bad key is not another provider's job
        else:
            assert report.frames_received > 0
            record = await record_of(bridge, report.call_sid)
            assert record.provider == "fal"
            assert record.end_reason == "caller_hangup"
            await closed(bridge.fal)
        await keeps_serving(bridge, POLAR_DESK)
        await assert_no_leaks(bridge, before)


async def test_polargrid_retry_after_is_honoured(start_bridge: BridgeFactory) -> None:
    """After a 429, calls skip PolarGrid for the ``Retry-After`` wait (§3), then try again."""
    knobs = options(polargrid_extra={"reject_status": 429, "retry_after": 1})
    async with start_bridge(simulators=knobs) as bridge:
        before = baseline(bridge)
        first = await call(bridge, POLAR_DESK, audio=tone_mulaw(0.4))
        second = await call(bridge, POLAR_DESK, audio=tone_mulaw(0.4))
        for report in (first, second):
            assert (await record_of(bridge, report.call_sid)).provider == "fal"
        assert bridge.polargrid.rejected == [429]  # the second call did not knock again
        heal(bridge)
        await asyncio.sleep(1.0)  # the wait the provider asked for is over
        third = await call(bridge, POLAR_DESK, audio=tone_mulaw(0.4))
        assert third.frames_received > 0
        assert (await record_of(bridge, third.call_sid)).provider == "polargrid"
        await assert_no_leaks(bridge, before)


async def test_overflow_to_a_refusing_polargrid(start_bridge: BridgeFactory) -> None:
    """Every self-hosted server is taken and PolarGrid refuses: the fallback, not dead air.

    An overflow is the last resort, so any refusal ends there (the status mapping
    is the previous test's; 429 here also shows the wait reaching the call row).
    """
    status = 429
    knobs = options(polargrid_extra={"reject_status": status, "retry_after": 7})
    async with start_bridge(simulators=knobs) as bridge:
        before = baseline(bridge)
        holders = await occupy_every_server(bridge, 1.0)
        report = await call(bridge, CITYSAN)
        record = await heard_fallback(bridge, report, "citysan", "model_failed")
        assert "HTTP 429" in (record.error or "")
        assert "retry after 7 s" in (record.error or "")
        assert bridge.polargrid.rejected == [status]
        for holder in holders:
            assert (await holder).frames_received > 0  # the other calls went on
        await keeps_serving(bridge, CITYSAN)
        await assert_no_leaks(bridge, before)


@pytest.mark.parametrize("after", [0.0, 0.5], ids=["at-connect", "mid-call"])
async def test_fal_timeout(start_bridge: BridgeFactory, after: float) -> None:
    """fal sends ``x-fal-error`` TIMEOUT and closes: the caller hears the fallback."""
    async with start_bridge(simulators=options(fal_extra={"fal_timeout_after": after})) as bridge:
        before = baseline(bridge)
        report = await call(bridge, FAL_DESK, audio=tone_mulaw(3.0))
        record = await heard_fallback(bridge, report, "faldesk", "model_ended")
        assert "TIMEOUT" in (record.error or "")
        await closed(bridge.fal)
        assert bridge.fal.connections[-1].end == "fault TIMEOUT"
        await keeps_serving(bridge, FAL_DESK)
        await assert_no_leaks(bridge, before)


# -- capacity: every self-hosted lease taken -------------------------------------------


@pytest.mark.parametrize(
    ("to", "overflow"),
    [(SHAKSHUKA, None), (CITYSAN, "polargrid"), (AERORENTALS, "fal")],
    ids=["no-overflow", "polargrid", "fal"],
)
async def test_every_self_hosted_server_busy(
    start_bridge: BridgeFactory, to: str, overflow: str | None
) -> None:
    """Two servers, two calls: a third hears the busy message or goes to its overflow."""
    async with start_bridge(simulators=options(self_hosted_servers=2)) as bridge:
        before = baseline(bridge)
        holders = await occupy_every_server(bridge, 1.0)
        report = await call(bridge, to)
        record = await record_of(bridge, report.call_sid)
        if overflow is None:
            assert report.twiml_verbs[:2] == ["Say", "Hangup"]
            assert report.said == [persona(bridge, "shakshuka").busy_message]
            assert record.end_reason == "busy"
        else:
            assert report.frames_received > 0
            assert record.provider == overflow
            assert record.end_reason == "caller_hangup"
            await closed(getattr(bridge, overflow))
        # Never queued behind a busy server (§2.5).
        assert [len(sim.connections) for sim in bridge.self_hosted] == [1, 1]
        for holder in holders:
            assert (await holder).frames_received > 0
        await keeps_serving(bridge)
        await assert_no_leaks(bridge, before)
