"""The caller's side of a call, whatever carries it: the leg interface.

ARCHITECTURE.md, "Growing: many legs". A call joins one *leg* to one model
session. Twilio's media stream, the dashboard's browser softphone and each
further carrier are legs; :class:`~phonebridge.calls.session.CallSession`
sees only this module, so nothing in ``calls/`` names a carrier and adding a
leg means a new module, never an edit of the session.

What a leg must offer, chosen from what the carriers differ on
(../shared/CARRIERS.md §0, §8):

- **Audio in and out at the leg's own rate.** The session sees mono s16le
  PCM at :attr:`Leg.sample_rate` (8 kHz mu-law or 16/24 kHz L16 decoded by
  the leg; Telnyx's big-endian L16, Vonage's binary frames and Exotel's
  base64 chunks are the leg's business). Caller audio arrives as
  :class:`CallerAudio` carrying its rate and its position on the leg's own
  sample timeline, so a carrier whose frames arrive out of order or with gaps
  still records in the right place. :meth:`Leg.play` takes agent PCM of any
  length; the leg frames it as its wire demands (Twilio: any size; Vonage:
  exactly 20 ms per message; Exotel: at least 100 ms, multiples of 320 B).
- **Interrupt.** :meth:`Leg.clear` drops audio the far end queued but has
  not played (Twilio/Telnyx/Exotel ``clear``, Plivo ``clearAudio``, Vonage
  ``{"action":"clear"}``).
- **Playback position.** :meth:`Leg.mark` asks to be told when what was
  played so far has been heard; the answer is a :class:`PlaybackMark` event
  (Twilio ``mark`` echo, Plivo ``playedStream``, Vonage ``websocket:notify``).
  A leg without marks says so with ``supports_marks = False``.
- **DTMF** where the leg has it: :class:`KeyPress`.
- **End, with who ended it**: :class:`LegEnded` carries a
  :class:`~phonebridge.calls.outcome.CallEndReason` (the caller hung up,
  the socket dropped, the peer broke its protocol), so the call's outcome
  and its record read the same for every leg. Plivo and Vonage have no
  ``stop``: their legs report a socket close as the end.
- **Agent text** (:meth:`Leg.show_text`): the browser shows it live; a
  phone line drops it.

A leg is a thin socket edge over a sans-I/O protocol module (Twilio's lives
in ``telephony/twilio/``); :meth:`Leg.receive` returns typed events and
raises nothing for bad input: a peer that breaks its protocol ends the call
with ``PROTOCOL_ERROR``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from phonebridge.calls.outcome import CallEndReason


@dataclass(frozen=True, slots=True)
class CallerAudio:
    """Caller speech: mono s16le PCM at ``sample_rate``, any length.

    ``at_sample`` is where its first sample sits on the call's timeline (0 =
    the leg started), counted at ``sample_rate``: the leg's own clock (Twilio's
    ``timestamp``, the samples a browser has sent), not the arrival time.
    """

    pcm: bytes
    sample_rate: int
    at_sample: int


@dataclass(frozen=True, slots=True)
class KeyPress:
    """The caller pressed a key (DTMF)."""

    digit: str


@dataclass(frozen=True, slots=True)
class PlaybackMark:
    """The far end played everything sent before :meth:`Leg.mark` ``name`` (or cleared it)."""

    name: str


@dataclass(frozen=True, slots=True)
class LegEnded:
    """The leg is over; nothing follows. ``reason.ended_by`` says who ended it."""

    reason: CallEndReason
    detail: str = ""


LegEvent = CallerAudio | KeyPress | PlaybackMark | LegEnded


class Leg(Protocol):
    """The caller's side of one call, as :class:`~phonebridge.calls.session.CallSession` sees it."""

    channel: str
    """What kind of leg this is, as stored on the call row (``twilio``, ``browser``...)."""

    stream_id: str
    """The leg's own identifier for this call (Twilio's stream SID), for the record."""

    sample_rate: int
    """The rate of the PCM the leg delivers and takes (8000, 16000 or 24000)."""

    supports_marks: bool
    """Whether :meth:`mark` is answered with a :class:`PlaybackMark`."""

    async def receive(self) -> LegEvent | None:
        """The next event; ``None`` for a message that carries nothing for the call.

        After a :class:`LegEnded`, the leg returns further ``LegEnded`` events
        (never raises): the call's reader stops at the first.
        """

    async def play(self, pcm: bytes) -> None:
        """Send agent audio (s16le at :attr:`sample_rate`, any length) towards the caller."""

    async def clear(self) -> None:
        """Drop agent audio queued at the far end but not yet played (barge-in)."""

    async def mark(self, name: str) -> None:
        """Ask for a :class:`PlaybackMark` ``name`` once what was played so far is heard."""

    async def show_text(self, text: str) -> None:
        """A piece of the agent's text, as the model emits it (a no-op for phone lines)."""

    async def close(self) -> None:
        """The bridge ends the call (or it ended): close the leg's socket. Idempotent."""
