"""Listen-in's fan-out: bounded, never waits, stops when the call ends."""

from __future__ import annotations

import pytest

from phonebridge.calls.listen import Heard, ListenHub, Side
from phonebridge.errors import CapacityError


async def test_listeners_hear_both_sides_in_order() -> None:
    hub = ListenHub(24000)
    listener = hub.join("alice")
    hub.caller(b"\x01\x00")
    hub.agent(b"\x02\x00")
    assert await listener.next() == Heard(Side.CALLER, b"\x01\x00")
    assert await listener.next() == Heard(Side.AGENT, b"\x02\x00")


async def test_a_slow_listener_drops_audio_instead_of_waiting() -> None:
    hub = ListenHub(8000, queue_chunks=3)
    slow = hub.join("slow")
    for n in range(10):
        hub.caller(bytes([n, 0]))  # returns at once: nobody is reading
    assert slow.dropped == 7
    assert (await slow.next()) == Heard(Side.CALLER, bytes([0, 0]))


async def test_the_call_ending_stops_every_listener() -> None:
    hub = ListenHub(8000, queue_chunks=2)
    listener = hub.join("alice")
    hub.caller(b"\x00\x00")
    hub.caller(b"\x00\x00")
    hub.close()
    assert await listener.next() is None  # stale audio is dropped for the end marker
    assert not hub
    late = hub.join("late")
    assert await late.next() is None


def test_the_number_of_listeners_is_capped() -> None:
    hub = ListenHub(8000, max_listeners=2)
    first = hub.join("a")
    hub.join("b")
    with pytest.raises(CapacityError):
        hub.join("c")
    hub.leave(first)
    hub.join("c")
    assert len(hub) == 2
