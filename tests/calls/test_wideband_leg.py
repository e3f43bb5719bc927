"""A leg at its own rate: 24 kHz reaches the model wideband, 8 kHz stays narrowband.

The leg here is a TEST DOUBLE written against calls/leg.py alone (no carrier,
no socket): that it runs through the real bridge (admission, leases, the
model clients, the journal) unchanged is the point of the interface.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from phonebridge.calls.bridge import CallRefused, NewCall
from phonebridge.calls.leg import CallerAudio, LegEnded, LegEvent
from phonebridge.calls.outcome import CallEndReason
from phonebridge.local import LocalBridge, SimulatorOptions
from phonebridge.models.base import frame_bytes

from ..conftest import BridgeFactory, record_of
from ..e2e.leaks import assert_no_leaks, bridge_of


def tone(rate: int, hz: float, seconds: float, level: float = 0.3) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * hz * t) * level * 32767).astype("<i2").tobytes()


def share_above(pcm: bytes, rate: int, hz: float) -> float:
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spectrum[freqs > hz].sum() / max(spectrum.sum(), 1.0))


class ScriptedLeg:
    """A caller at ``sample_rate`` who says ``pcm`` in real time, then hangs up. TEST DOUBLE."""

    channel = "test"
    supports_marks = False

    def __init__(self, pcm: bytes, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.stream_id = "TEST"
        self._frames = [
            pcm[i : i + frame_bytes(sample_rate)]
            for i in range(0, len(pcm), frame_bytes(sample_rate))
        ]
        self._next = 0
        self.sent = set(self._frames)
        self.played = bytearray()
        self.texts: list[str] = []
        self.closed = False

    async def receive(self) -> LegEvent | None:
        if self._next >= len(self._frames):
            await asyncio.sleep(0.2)  # let the last agent audio come back
            return LegEnded(CallEndReason.CALLER_HANGUP, "script done")
        await asyncio.sleep(0.02)
        frame = self._frames[self._next]
        self._next += 1
        return CallerAudio(frame, self.sample_rate, (self._next - 1) * len(frame) // 2)

    async def play(self, pcm: bytes) -> None:
        self.played += pcm

    async def clear(self) -> None:
        pass

    async def mark(self, name: str) -> None:
        pass

    async def show_text(self, text: str) -> None:
        self.texts.append(text)

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
async def wide_bridge(
    start_bridge: BridgeFactory, personas_dir: Path
) -> AsyncIterator[LocalBridge]:
    citysan = (personas_dir / "citysan.yaml").read_text()
    fal = (
        citysan.replace("provider: personaplex", "provider: fal")
        .replace('["+14165550101"]', '["+14165550111"]')
        .replace("overflow: polargrid\n", "")
    )
    (personas_dir / "falsan.yaml").write_text(fal)
    options = SimulatorOptions(
        reply="echo",
        conditioning_delay=0.05,
        extra={"keep_input_seconds": 10},
        fal_extra={"keep_input_seconds": 10},
    )
    async with start_bridge(simulators=options) as running:
        yield running


async def run_leg(local: LocalBridge, persona_id: str, leg: ScriptedLeg) -> str:
    bridge = bridge_of(local)
    persona = bridge.persona_book().by_id(persona_id)
    assert persona is not None
    call_sid = "CA" + "7" * 32
    admitted = await bridge.admit(
        NewCall(
            call_sid=call_sid,
            from_number="test",
            to_number="",
            persona=persona,
            request=persona.session_request(leg.sample_rate),
            channel=leg.channel,
        )
    )
    assert not isinstance(admitted, CallRefused)
    pending = bridge.claim(admitted.token, call_sid)
    assert pending is not None
    async with asyncio.timeout(20):
        outcome = await bridge.run_call(pending, leg)
    assert outcome.reason is CallEndReason.CALLER_HANGUP
    return call_sid


async def test_a_24k_leg_reaches_the_self_hosted_model_wideband(wide_bridge: LocalBridge) -> None:
    leg = ScriptedLeg(tone(24000, 6000, 2.0), 24000)
    call_sid = await run_leg(wide_bridge, "citysan", leg)
    heard = bytes(wide_bridge.self_hosted[0].connections[-1].input_pcm)
    assert len(heard) > 24000  # at least half a second of the call
    assert share_above(heard, 24000, 4000) > 0.5  # the 6 kHz tone crossed Opus
    assert share_above(bytes(leg.played), 24000, 4000) > 0.3  # and came back (echo)
    assert leg.closed
    row = await record_of(wide_bridge, call_sid)
    assert row.channel == "test"
    assert row.recording_path is not None
    with wave.open(row.recording_path, "rb") as wav:
        assert wav.getframerate() == 24000
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    assert share_above(stereo[0::2].tobytes(), 24000, 4000) > 0.5  # the caller, recorded wideband
    await assert_no_leaks(wide_bridge)


async def test_a_24k_leg_reaches_fal_untouched(wide_bridge: LocalBridge) -> None:
    leg = ScriptedLeg(tone(24000, 6000, 1.5), 24000)
    await run_leg(wide_bridge, "falsan", leg)
    heard = bytes(wide_bridge.fal.connections[-1].input_pcm)
    size = frame_bytes(24000)
    voiced = [heard[i : i + size] for i in range(0, len(heard) - size + 1, size)]
    voiced = [frame for frame in voiced if any(frame)]
    assert len(voiced) > 20
    # Byte for byte what the leg sent: never squeezed through 8 kHz and back.
    assert all(frame in leg.sent for frame in voiced)
    await assert_no_leaks(wide_bridge)


async def test_an_8k_leg_stays_narrowband(wide_bridge: LocalBridge) -> None:
    leg = ScriptedLeg(tone(8000, 1000, 1.5), 8000)
    await run_leg(wide_bridge, "citysan", leg)
    heard = bytes(wide_bridge.self_hosted[0].connections[-1].input_pcm)
    assert len(heard) > 24000
    assert share_above(heard, 24000, 4000) < 0.01  # Opus capped at narrowband, as before
    assert share_above(heard, 24000, 500) > 0.9
    await assert_no_leaks(wide_bridge)
