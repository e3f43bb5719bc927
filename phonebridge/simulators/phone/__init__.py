"""A phone simulator that behaves like Twilio — a TEST DOUBLE, not a Twilio client.

It plays the part Twilio plays in PROTOCOLS.md §1: POSTs the signed voice
webhook, follows the TwiML, opens the signed Media Streams WebSocket, sends a
caller's audio as ``media`` messages paced like a phone line (silence gaps and
DTMF included), plays the bridge's audio through a Twilio-like buffer (marks,
``clear``), rejects what Twilio rejects, and requests the ``<Connect action>``
URL when the bridge ends the stream. Used by tests, ``phonebridge demo`` and
``phonebridge dial``.

Modules: :mod:`.wire` (the Twilio side of the wire: what it sends, what it
accepts), :mod:`.playback` (the playback buffer), :mod:`.script` (the caller's
timeline), :mod:`.twiml_reader`, :mod:`.report`, :mod:`.audio_files`,
:mod:`.dial` (the I/O), :mod:`.cli`.
"""

from __future__ import annotations

from phonebridge.simulators.phone.dial import DEV_AUTH_TOKEN, dial
from phonebridge.simulators.phone.report import DialReport, ProtocolErrorRecord

__all__ = ["DEV_AUTH_TOKEN", "DialReport", "ProtocolErrorRecord", "dial"]
