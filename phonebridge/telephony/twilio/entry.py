"""Twilio's entry to the bridge: its requests, and the calls they hand to :class:`Bridge`.

- ``POST /twilio/voice`` (:meth:`TwilioEntry.voice_webhook`): pick the persona
  by the dialled number, take a lease, *start opening the model session now*
  (:meth:`Bridge.answer_phone`), answer ``<Connect><Stream>`` (PROTOCOLS.md
  §1.1) with a one-time token.
- ``WS /twilio/media`` (:meth:`TwilioEntry.media_stream`): read ``connected``
  and ``start``, claim the pending call with the token, run the
  :class:`~phonebridge.calls.session.CallSession` (:meth:`Bridge.run_call`).
- ``POST /twilio/call-status`` (:meth:`TwilioEntry.call_status`): the number's
  status callback; a call that ended while it rang frees its model at once,
  on whichever replica holds it (coordination/ ``RingingHangups``).
- ``POST /twilio/stream-ended`` (:meth:`TwilioEntry.stream_ended`): Twilio asks
  what to do after the stream closed; answer the persona's fallback when the
  call ended badly, else hang up (:meth:`Bridge.after_stream`). A call this
  process never held (its replica died, or this process restarted) gets the
  fallback too: its stream ended without an outcome because the process
  holding it was gone.

A call ended by a transfer (calls/transfer/) ends with a
:class:`~phonebridge.calls.outcome.Handoff`: the action answer then dials the
human (cold) or joins the conference where an accepting human waits (warm;
telephony/twilio/transfer.py, whose human calls' webhooks reach
:attr:`TwilioEntry.human_calls`), and nothing follows that verb.

Answering when the model is ready (calls/ready_answer.py) is Twilio's own
step: it holds the webhook's TwiML, which only a phone webhook has
(:meth:`Bridge.hold_answer`).

In a cluster the stream and action paths carry the replica id
(``/twilio/r/<id>/...``, config.Settings.sticky_prefix) so the edge proxy
brings them back to the replica holding the call; the status callback needs
no replica (any replica tells the others).

Signatures are checked by the web layer (web/twilio_routes.py) before these
are called; this module holds Twilio's call logic only, so tests can drive it
without HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from phonebridge.calls.bridge import (
    AfterStream,
    Bridge,
    Join,
    PhoneCall,
    Say,
    Transfer,
)
from phonebridge.calls.pending import PendingCall
from phonebridge.calls.personal import call_direction, carrier_fields
from phonebridge.errors import RemoteProtocolError
from phonebridge.telephony.twilio import twiml
from phonebridge.telephony.twilio.leg import PhoneSocket, TwilioLeg, await_start
from phonebridge.telephony.twilio.protocol import MediaStreamProtocol
from phonebridge.telephony.twilio.transfer import (
    TwilioHumanCalls,
    dial_document,
    join_document,
)

log = logging.getLogger(__name__)

_ENDED_STATUSES = frozenset({"completed", "canceled", "busy", "failed", "no-answer"})
"""Twilio's final call statuses (PROTOCOLS.md §1: StatusCallback ``CallStatus``)."""


@dataclass(frozen=True, slots=True)
class WebhookCall:
    """The voice webhook's form fields that matter (§1.1)."""

    call_sid: str
    account_sid: str
    from_number: str
    to_number: str

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> WebhookCall:
        missing = [key for key in ("CallSid", "To") if not form.get(key)]
        if missing:
            raise RemoteProtocolError(f"voice webhook without {', '.join(missing)}")
        return cls(
            call_sid=form["CallSid"],
            account_sid=form.get("AccountSid", ""),
            from_number=form.get("From", ""),
            to_number=form["To"],
        )


class TwilioEntry:
    """Twilio's requests for one process's :class:`Bridge`."""

    def __init__(
        self,
        bridge: Bridge,
        *,
        stream_url: str,
        action_url: str,
        start_timeout: float = 10.0,
        human_calls: TwilioHumanCalls | None = None,
    ) -> None:
        self.bridge = bridge
        self.stream_url = stream_url
        """wss://public-host/twilio/media, exactly as written in the TwiML."""
        self.action_url = action_url
        """https://public-host/twilio/stream-ended (the ``<Connect action>``)."""
        self.start_timeout = start_timeout
        """How long an accepted socket may take to send ``start``."""
        self.human_calls = human_calls
        """Warm transfers' human legs on Twilio (their webhooks reach them through here)."""

    # -- POST /twilio/voice ------------------------------------------------------

    async def voice_webhook(self, form: Mapping[str, str]) -> str:
        """The TwiML answer to Twilio's voice webhook.

        The answer is kept (shared by every replica when coordination is in
        Redis) until the stream claims the call: a Twilio retry that reaches
        another replica than the one holding the call gets the same
        ``<Connect><Stream>``, pointing at that replica, and opens nothing.
        """
        call = WebhookCall.from_form(form)
        previous = await self.bridge.kept_answer(call.call_sid)
        if previous is not None:
            log.info(
                "voice webhook retried on another replica; answered as before",
                extra={"call_sid": call.call_sid},
            )
            return previous
        answer = await self.bridge.answer_phone(
            PhoneCall(
                channel="twilio",
                call_sid=call.call_sid,
                from_number=call.from_number,
                to_number=call.to_number,
                account_sid=call.account_sid,
                direction=call_direction(form),
                fields=carrier_fields(form),
            )
        )
        if not isinstance(answer, PendingCall):
            return render_twiml(answer)
        # Twilio's own step: ringback until the model is ready (calls/ready_answer.py).
        await self.bridge.hold_answer(answer)
        if not self.bridge.still_pending(answer):
            # The caller hung up while it rang (call-status withdrew the call).
            return twiml.hangup()
        document = self.connect_twiml(answer)
        await self.bridge.keep_answer(call.call_sid, document)
        return document

    def connect_twiml(self, pending: PendingCall) -> str:
        """``<Connect><Stream>`` for a reserved call (an outbound call's answer too)."""
        return twiml.connect_stream(
            self.stream_url,
            self.action_url,
            {
                "call_sid": pending.call_sid,
                "persona": pending.persona.id,
                "from": pending.from_number,
                "to": pending.to_number,
                "token": pending.token,
            },
        )

    # -- WS /twilio/media ------------------------------------------------------------

    async def media_stream(self, phone: PhoneSocket) -> None:
        """Run one media stream to its end. The socket is already accepted."""
        bridge = self.bridge
        stream = MediaStreamProtocol()
        start = await await_start(
            phone, stream, start_timeout=self.start_timeout, clock=bridge.clock
        )
        if start is None:
            await phone.close(1008)
            return
        token = start.custom_parameters.get("token", "")
        pending = bridge.claim(token, start.call_sid)
        if pending is None:
            log.warning(
                "media stream with an unknown or used token", extra={"call_sid": start.call_sid}
            )
            await phone.close(1008)
            return
        bridge.forget_answer(start.call_sid)  # claimed: a replay now hangs up
        await bridge.run_call(
            pending, TwilioLeg(phone, stream, clock=bridge.clock, call_sid=start.call_sid)
        )

    # -- POST /twilio/stream-ended ----------------------------------------------------

    async def stream_ended(self, form: Mapping[str, str]) -> str:
        """TwiML for after the stream: the fallback if the call ended badly.

        The persona of a call this process never held is found by our own
        number: the dialled ``To`` of a call we received, the caller ID
        ``From`` of one we placed (``Direction`` ``outbound-api``).
        """
        outbound = form.get("Direction", "").startswith("outbound")
        our_number = form.get("From" if outbound else "To", "")
        other_number = form.get("To" if outbound else "From", "")
        return render_twiml(
            await self.bridge.after_stream(
                form.get("CallSid", ""), our_number, other_number, carrier="twilio"
            )
        )

    # -- POST /twilio/call-status ------------------------------------------------------

    async def call_status(self, form: Mapping[str, str]) -> None:
        """Twilio's status callback: a call that ended while it rang frees its model at once.

        Without it, a caller who hangs up during the ringing (the webhook held
        its answer, or the stream had not come yet) keeps a billed model socket
        open until the pending deadline. The number has one status callback,
        which reaches one replica: a call this replica does not hold pending is
        told to every replica (:meth:`Bridge.ringing_ended`), and the one
        holding it frees it.
        """
        if form.get("CallStatus", "") not in _ENDED_STATUSES:
            return
        await self.bridge.ringing_ended(form.get("CallSid", ""))


def render_twiml(answer: AfterStream) -> str:
    """TwiML (and SignalWire's cXML, the same verbs) for an answer without a stream."""
    match answer:
        case Say():
            return twiml.say_and_hangup(answer.message, voice=answer.voice)
        case Transfer() if answer.message is None:
            return dial_document(answer.number)  # a number or a SIP URI, nothing after it
        case Transfer():
            return twiml.dial(answer.number, message=answer.message)
        case Join():
            return join_document(answer.room)
    return twiml.hangup()
