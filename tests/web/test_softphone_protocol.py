"""The Talk socket's sans-I/O core and its one-time tickets, without an event loop."""

from __future__ import annotations

import json

import pytest

from phonebridge.web.softphone.protocol import (
    MAX_AUDIO_FRAME_BYTES,
    MAX_MESSAGES_PER_SECOND,
    Audio,
    BrowserProtocolError,
    BrowserStream,
    Digit,
    Hangup,
    MarkPlayed,
    Start,
)
from phonebridge.web.softphone.tickets import ListenTicket, TalkTicket, TicketBook

START = json.dumps({"type": "start", "sampleRate": 24000})


def started(now: float = 0.0) -> BrowserStream:
    stream = BrowserStream()
    assert stream.receive(START, now) == Start(24000)
    return stream


def test_audio_is_positioned_by_the_samples_sent_before_it() -> None:
    stream = started()
    first = stream.receive(bytes(960), 0.0)
    second = stream.receive(bytes(960), 0.02)
    assert first == Audio(bytes(960), 0)
    assert second == Audio(bytes(960), 480)


def test_control_messages() -> None:
    stream = started()
    assert stream.receive('{"type":"hangup"}', 0.1) == Hangup()
    assert stream.receive('{"type":"mark","name":"pb1"}', 0.1) == MarkPlayed("pb1")
    assert stream.receive('{"type":"dtmf","digit":"5"}', 0.1) == Digit("5")


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (bytes(MAX_AUDIO_FRAME_BYTES + 2), 1009),
        (bytes(961), 1008),
        ("[1]", 1008),
        ('{"type":"start","sampleRate":24000}', 1008),  # a second start
        ('{"type":"dtmf","digit":"x"}', 1008),
        ('{"type":"teleport"}', 1008),
        ("{" * 100_000, 1009),
    ],
)
def test_bad_messages_carry_their_close_code(message: bytes | str, code: int) -> None:
    stream = started()
    with pytest.raises(BrowserProtocolError) as error:
        stream.receive(message, 0.0)
    assert error.value.close_code == code


def test_nothing_but_start_comes_first() -> None:
    with pytest.raises(BrowserProtocolError, match="before start"):
        BrowserStream().receive(bytes(960), 0.0)
    with pytest.raises(BrowserProtocolError, match="before start"):
        BrowserStream().receive('{"type":"hangup"}', 0.0)


def test_audio_ahead_of_real_time_is_a_flood() -> None:
    stream = started()
    now = 0.0
    for _ in range(50):  # exactly one second of audio in one instant: allowed lead
        stream.receive(bytes(960), now)
    with pytest.raises(BrowserProtocolError, match="flood"):
        stream.receive(bytes(960), now)


def test_real_time_audio_never_floods() -> None:
    stream = started()
    for n in range(1000):
        stream.receive(bytes(960), n * 0.02)


def test_too_many_messages_in_a_second_is_a_flood() -> None:
    stream = started()
    for _ in range(MAX_MESSAGES_PER_SECOND - 1):  # the start was the first
        stream.receive('{"type":"mark","name":"x"}', 0.5)
    with pytest.raises(BrowserProtocolError, match="message flood"):
        stream.receive('{"type":"mark","name":"x"}', 0.5)


def test_a_ticket_is_redeemed_once_and_expires() -> None:
    book = TicketBook(ttl=30.0)
    ticket = TalkTicket("alice", "citysan", prompt="Be brief.", voice="NATF0")
    token = book.issue(ticket, 100.0)
    assert book.redeem(token, 101.0) == ticket
    assert book.redeem(token, 101.0) is None  # replayed
    late = book.issue(ListenTicket("bob", "CA" + "0" * 32), 100.0)
    assert book.redeem(late, 130.0) is None  # expired
    assert book.redeem("guess", 100.0) is None


def test_the_ticket_book_is_bounded() -> None:
    book = TicketBook(ttl=30.0, capacity=3)
    tokens = [book.issue(ListenTicket("u", "CA" + "0" * 32), 0.0) for _ in range(5)]
    assert len(book) == 3
    assert book.redeem(tokens[0], 1.0) is None
    assert book.redeem(tokens[-1], 1.0) is not None
    book.issue(ListenTicket("u", "CA" + "0" * 32), 100.0)  # expired ones are forgotten
    assert len(book) == 1
