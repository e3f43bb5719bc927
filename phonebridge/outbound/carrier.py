"""What the outbound service needs of a carrier that can dial out, in its own terms.

Every carrier names the same few facts differently: Twilio's ``CallStatus``
``no-answer``, Telnyx's ``call.hangup`` with ``hangup_cause`` ``timeout``,
Vonage's ``unanswered`` event, Plivo's ``HangupCause``; Twilio's
``AnsweredBy`` ``machine_end_beep``, Telnyx's ``call.machine.greeting.ended``
with ``beep_detected``. The outbound service (:mod:`.service`) speaks only the
carrier-neutral vocabulary here; each carrier's module
(``telephony/<carrier>/dialer.py``) translates its REST answers, and each
carrier's callback routes translate its webhooks, into it.

- :class:`Dialer`: place a call (with answering-machine detection and the
  carrier's callbacks), fetch one by the carrier's id, find the calls of an
  attempt whose create answer was lost (crash recovery), hang up.
- :data:`CallStatus` and :data:`MachineVerdict`: a call's progress and the
  answering-machine verdict, as the service understands them.
- :class:`OutboundCarrier`: the dialer, our SID for the carrier's call ids,
  and the leg's sample rate (the model session is opened at it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from phonebridge.errors import PhonebridgeError
from phonebridge.telephony.carrier_leg import bridge_call_sid

CallStatus = Literal[
    "queued", "ringing", "in-progress", "completed", "busy", "no-answer", "failed", "canceled"
]
"""A placed call's progress (Twilio's spelling, which the first dialer used)."""

TERMINAL_STATUSES: frozenset[CallStatus] = frozenset(
    {"completed", "busy", "no-answer", "failed", "canceled"}
)

MachineVerdict = Literal["human", "machine", "message_end", "unknown"]
"""Who answered: a person; an answering machine (its greeting is playing);
``message_end``: the machine's greeting is over (the beep has passed: a
voicemail starts now); or undetermined."""

MachineDetection = Literal["hangup", "voicemail"]
"""What the persona does on a machine; a dialer asks for a verdict at the
greeting's end (``voicemail``) or as soon as it is known (``hangup``)."""


class CarrierError(PhonebridgeError):
    """The carrier refused or could not take a request (``status``: HTTP, ``code``: carrier's)."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def definitely_not_placed(self) -> bool:
        """The carrier answered with a refusal (4xx): no call exists. A transport
        error or a 5xx leaves it unknown, to be looked up."""
        return self.status is not None and 400 <= self.status < 500


@dataclass(frozen=True, slots=True)
class DialRequest:
    attempt_id: str
    """Ours: a dialer that cannot put it in its callback URLs carries it in the
    carrier's own tag (Telnyx ``client_state``, Exotel ``CustomField``), and
    :meth:`Dialer.find` matches a lost call by it where the carrier can."""
    to: str
    from_: str
    callback_url: Callable[[str], str]
    """kind (``answer``, ``status``, ``amd``, ``events`` …: the dialer chooses the
    kinds its carrier needs) -> the public URL of our route for it, carrying the
    attempt id (served by the carrier's routes under ``/outbound/<carrier>/``)."""
    ring_seconds: int
    machine: MachineDetection
    sample_rate: int
    """The leg's rate, for carriers whose stream parameters are set when dialling."""


@dataclass(frozen=True, slots=True)
class CarrierCall:
    sid: str
    """The carrier's id for the call (what its REST API takes)."""
    status: CallStatus
    to: str
    from_: str
    answered_by: str | None = None
    """The carrier's own word for who answered, as recorded on the attempt."""


class Dialer(Protocol):
    name: str  # the carrier (config.CARRIERS, or twilio): the call's channel
    label: str  # for messages
    leaves_voicemail: bool
    """Whether a persona with ``on_machine: voicemail`` can dial through it: the
    carrier tells a machine from a person and when its greeting is over. One that
    cannot is refused before anything is claimed (a message said into a greeting,
    or to a person, is worse than no call)."""

    async def place(self, request: DialRequest) -> CarrierCall: ...

    async def fetch(self, call_sid: str) -> CarrierCall | None:
        """The call by the carrier's id; None when the carrier does not know it."""
        ...

    async def find(
        self, *, attempt_id: str, to: str, from_: str, since: datetime
    ) -> Sequence[CarrierCall]:
        """The calls that may be the lost one of a claimed attempt (crash recovery):
        the carrier's record of calls to ``to`` from ``from_`` since ``since``, or
        its calls tagged with ``attempt_id``. An empty answer means nobody was
        dialled, so it must be complete for the window."""
        ...

    async def hang_up(self, call_sid: str) -> None:
        """End the call; a call already gone is success."""
        ...


@dataclass(frozen=True, slots=True)
class OutboundCarrier:
    """One carrier the bridge can dial out through."""

    dialer: Dialer
    rate: int | None = None
    """The leg's sample rate (the model session is opened at it); None: Twilio's."""

    @property
    def name(self) -> str:
        return self.dialer.name

    def call_sid(self, carrier_call_id: str) -> str:
        """Our SID (rows, the live call) for the carrier's call id."""
        if self.dialer.name == "twilio":
            return carrier_call_id
        return bridge_call_sid(self.dialer.name, carrier_call_id)
