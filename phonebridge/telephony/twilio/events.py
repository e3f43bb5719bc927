"""Typed events for the messages Twilio sends on a Media Streams socket.

PROTOCOLS.md §1.2. One frozen dataclass per ``event`` value; the JSON edge
(:mod:`phonebridge.telephony.twilio.protocol`) turns wire dicts into these and
nothing else in the project looks at the raw JSON.

Wire numbers (``sequenceNumber``, ``chunk``, ``timestamp``) arrive as strings;
here they are already ints. ``Media.payload`` is the decoded mu-law bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Connected:
    """First message on the socket; carries no stream identity."""

    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    """The stream started: identity, tracks, ``<Parameter>`` values and audio format."""

    sequence_number: int
    stream_sid: str
    account_sid: str
    call_sid: str
    tracks: tuple[str, ...]
    custom_parameters: Mapping[str, str]
    encoding: str
    sample_rate: int
    channels: int


@dataclass(frozen=True, slots=True)
class Media:
    """One chunk of caller audio: raw 8 kHz mu-law (usually 160 bytes = 20 ms)."""

    sequence_number: int
    stream_sid: str
    track: str
    chunk: int
    timestamp_ms: int  # since the stream started, by Twilio's clock
    payload: bytes


@dataclass(frozen=True, slots=True)
class Dtmf:
    """The caller pressed a key (``track`` is ``"inbound_track"`` on the wire)."""

    sequence_number: int
    stream_sid: str
    track: str
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    """Echo of a mark we sent: the audio queued before it was played or cleared."""

    sequence_number: int
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    """The stream ended (caller hung up or the call ended)."""

    sequence_number: int
    stream_sid: str
    account_sid: str
    call_sid: str


TwilioEvent = Connected | Start | Media | Dtmf | Mark | Stop
