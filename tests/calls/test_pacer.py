"""InputPacer: caller audio reaches the model at real time, gaps become silence."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from phonebridge.calls.pacer import FRAME_SECONDS, InputPacer

SILENCE = b"\x00"


def frame(n: int) -> bytes:
    return n.to_bytes(2, "big")


def test_caller_audio_before_start_is_dropped_not_queued() -> None:
    pacer = InputPacer(SILENCE)
    assert pacer.push_caller(frame(1), now=0.0) == []
    assert pacer.tick(0.5) == []
    pacer.start(1.0)
    assert pacer.tick(1.0) == []  # nothing queued from before start
    assert pacer.stats.discarded_before_ready == 1
    assert pacer.stats.dropped_frames == 0  # by design, not lost audio


def test_on_time_frames_pass_through_at_once() -> None:
    pacer = InputPacer(SILENCE)
    pacer.start(0.0)
    for i in range(100):
        now = i * FRAME_SECONDS + 0.003
        assert pacer.push_caller(frame(i), now) == [frame(i)]
        assert pacer.tick(now) == []
    assert pacer.stats.silence_frames == 0


def test_gap_is_filled_with_silence_at_real_time() -> None:
    pacer = InputPacer(SILENCE, fill_after_frames=2)
    pacer.start(0.0)
    assert pacer.push_caller(frame(0), 0.0) == [frame(0)]
    sent = 1
    now = 0.0
    # Twilio goes quiet for one second: the clock fills it.
    while now < 1.0:
        deadline = pacer.next_deadline()
        assert deadline is not None
        now = deadline
        out = pacer.tick(now)
        assert out == [SILENCE]
        sent += len(out)
    # Real time allowed floor(now/20ms)+1 frames; the pacer stays fill_after behind.
    assert sent == int(now / FRAME_SECONDS + 1e-6) + 1 - 2
    # The caller speaks again: forwarded at once, no backlog.
    assert pacer.push_caller(frame(7), now + 0.001) == [frame(7)]


def test_burst_is_held_to_real_time_and_oldest_dropped() -> None:
    pacer = InputPacer(SILENCE, lead_frames=2, max_queue_frames=3)
    pacer.start(0.0)
    out = []
    for i in range(10):  # ten frames arrive at once
        out += pacer.push_caller(frame(i), 0.0)
    # One frame is due at t=0 plus two of lead; three wait; four were dropped.
    assert out == [frame(0), frame(1), frame(2)]
    assert pacer.stats.dropped_frames == 4
    deadline = pacer.next_deadline()
    assert deadline is not None
    assert abs(deadline - FRAME_SECONDS) < 1e-9
    assert pacer.tick(deadline) == [frame(7)]


def test_loop_stall_catches_up_a_bounded_amount() -> None:
    pacer = InputPacer(SILENCE, fill_after_frames=2, max_catch_up_frames=5)
    pacer.start(0.0)
    out = pacer.tick(10.0)  # the event loop was stuck for ten seconds
    assert len(out) == 5
    assert pacer.stats.rebased == 1
    # Afterwards it runs at real time again.
    deadline = pacer.next_deadline()
    assert deadline is not None
    assert abs(deadline - (10.0 + FRAME_SECONDS)) < 1e-6
    assert pacer.tick(deadline) == [SILENCE]


@settings(max_examples=200, deadline=None)
@given(
    arrivals=st.lists(
        st.tuples(st.floats(min_value=0, max_value=0.2), st.booleans()), min_size=1, max_size=200
    )
)
def test_never_ahead_of_real_time(arrivals: list[tuple[float, bool]]) -> None:
    """Whatever Twilio does, input sent never exceeds real time plus the lead."""
    pacer = InputPacer(SILENCE, lead_frames=2)
    pacer.start(0.0)
    now = 0.0
    sent = 0
    for step, is_media in arrivals:
        now += step
        out = pacer.push_caller(frame(1), now) if is_media else []
        out += pacer.tick(now)
        sent += len(out)
        allowed = int(now / FRAME_SECONDS + 1e-6) + 1 + 2
        assert sent <= allowed
        assert pacer.frames_sent == sent
