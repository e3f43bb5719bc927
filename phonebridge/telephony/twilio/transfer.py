"""Twilio's side of a hand-off to a human: the documents, the human's call, its webhooks.

PROTOCOLS.md §1.1 (TwiML after the stream) and §1.5 (REST). The decision
logic is not here (calls/transfer/); this module renders it for Twilio.

**Why conference-based, not ``<Dial>``-based.** A warm transfer must ring and
brief the human *while the caller stays with the bridge* (hearing hold audio,
and returning to the persona if nobody accepts), and bridge the two only on
accept. A ``<Dial><Number url=whisper>`` from the caller's call would need the
caller to leave the stream first: the caller hears ringback instead of the
persona's hold audio, and "back to the persona" needs a new stream and a new
model session, with the first one's context lost. So the human is rung with
``calls.create`` (the whisper is that call's own TwiML: ``<Say>`` inside a
one-key ``<Gather>``), and on accept both legs meet in a conference named
for the caller's call: the human's ``<Gather action>`` answer joins it, and
the caller's ``<Connect action>`` answer (telephony/twilio/entry.py) joins it when the
bridge closes the stream. Both legs end the conference on exit, so neither
is left alone in it. A cold transfer is a plain ``<Dial>``.

**No timed verb after the stream, ever** (../shared/CARRIERS.md, Telnyx
TeXML): every document here ends with the ``<Dial>`` (or ``<Hangup/>``), so
nothing can cut a caller off while they talk to the human. A test checks
this over every document any carrier module returns
(tests/telephony/test_no_timed_verb_after_stream.py).

Every webhook the human's call makes (whisper, key, status) lives under the
replica's sticky prefix (``/twilio/r/<id>/transfer/<transfer id>/...``) so the
edge proxy brings it to the replica holding the call, and is signed and
checked like every Twilio webhook (web/twilio_routes.py). A REST "call already
gone" (20404) when hanging the human up is success (rest.py).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Final

from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from phonebridge.calls.outcome import Handoff
from phonebridge.calls.transfer.warm import (
    TOO_LATE,
    DialRequest,
    Dismiss,
    HumanListener,
    HumanPrompt,
    JoinCaller,
    Whisper,
)
from phonebridge.errors import LocalProtocolError
from phonebridge.personas.transfer import SIP_PATTERN
from phonebridge.telephony.twilio import twiml
from phonebridge.telephony.twilio.rest import TwilioApiError, TwilioCallControl

log = logging.getLogger(__name__)

TRANSFER_PATH: Final = "/transfer"
KEEP_TRANSFERS: Final = 512
"""Hand-offs remembered for their late webhooks (a status callback after the
result): bounded, oldest forgotten first; a forgotten one answers "too late"."""


# -- documents -------------------------------------------------------------------------


def handoff_document(handoff: Handoff) -> str:
    """The caller's TwiML after the stream: dial the human (cold) or join them (warm)."""
    if handoff.join:
        return join_document(handoff.to)
    return dial_document(handoff.to)


def dial_document(target: str) -> str:
    """``<Dial>`` an E.164 number or a SIP URI; nothing after it."""
    if SIP_PATTERN.fullmatch(target):
        response = VoiceResponse()
        dial = Dial()
        dial.sip(target)
        response.append(dial)
        return str(response.to_xml())
    return twiml.dial(target)


def join_document(room: str) -> str:
    """Join the conference ``room``; either leg leaving ends it (nobody is left alone)."""
    if not room or len(room) > 128:
        raise LocalProtocolError(f"conference name {room!r} must be 1-128 characters")
    response = VoiceResponse()
    dial = Dial()
    dial.conference(
        room,
        beep=False,
        start_conference_on_enter=True,
        end_conference_on_exit=True,
        wait_url="",  # no hold music in the conference: both legs arrive within a second
    )
    response.append(dial)
    return str(response.to_xml())


def whisper_document(prompt: Whisper, key_url: str) -> str:
    """Speak the summary inside a one-key ``<Gather>``; no key in time posts an empty one."""
    response = VoiceResponse()
    gather = Gather(
        input="dtmf",
        num_digits=1,
        timeout=max(1, round(prompt.timeout)),
        action=key_url,
        method="POST",
        action_on_empty_result=True,
    )
    gather.say(prompt.text, voice=prompt.voice, language=prompt.language)
    response.append(gather)
    return str(response.to_xml())


def human_document(prompt: HumanPrompt, key_url: str) -> str:
    match prompt:
        case Whisper():
            return whisper_document(prompt, key_url)
        case JoinCaller(room=room):
            return join_document(room)
        case Dismiss(message=message):
            return twiml.say_and_hangup(message)


# -- the human's call --------------------------------------------------------------------


class TwilioHumanCalls:
    """Places warm transfers' human calls and answers their webhooks (a HumanDialer).

    ``webhook_url(path)`` is the public URL Twilio signs for a path;
    ``sticky_prefix`` is where this replica's paths live (config/settings.py).
    """

    def __init__(
        self,
        control: TwilioCallControl,
        *,
        webhook_url: Callable[[str], str],
        sticky_prefix: str,
    ) -> None:
        self._control = control
        self._webhook_url = webhook_url
        self._prefix = sticky_prefix
        self._listeners: OrderedDict[str, HumanListener] = OrderedDict()
        self._background: set[asyncio.Task[None]] = set()

    def _url(self, transfer_id: str, step: str) -> str:
        return self._webhook_url(f"{self._prefix}{TRANSFER_PATH}/{transfer_id}/{step}")

    async def dial(self, request: DialRequest, listener: HumanListener) -> str:
        transfer_id = secrets.token_urlsafe(12)
        # Registered before the request: Twilio may ask for the whisper before
        # calls.create has even returned.
        self._listeners[transfer_id] = listener
        while len(self._listeners) > KEEP_TRANSFERS:
            self._listeners.popitem(last=False)
        return await self._control.create_call(
            to=request.to,
            from_=request.from_number,
            url=self._url(transfer_id, "whisper"),
            status_callback=self._url(transfer_id, "status"),
            ring_seconds=max(5, round(request.ring_seconds)),
        )

    def hang_up(self, human_id: str, *, ringing: bool) -> None:
        task = asyncio.create_task(self._hang_up(human_id, ringing), name=f"{human_id}:hang-up")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _hang_up(self, call_sid: str, ringing: bool) -> None:
        try:
            gone = not await (self._control.cancel if ringing else self._control.hang_up)(call_sid)
        except TwilioApiError as exc:
            log.warning("could not hang up the transfer's human call: %s", exc)
            return
        if gone:
            log.info("the transfer's human call had already ended", extra={"call_sid": call_sid})

    async def aclose(self) -> None:
        """Let in-flight hang-ups finish (bounded), at shutdown."""
        if self._background:
            await asyncio.wait(self._background, timeout=5.0)

    # -- webhooks (signatures already checked) ----------------------------------------

    def whisper(self, transfer_id: str, form: Mapping[str, str]) -> str:
        listener = self._listeners.get(transfer_id)
        prompt = Dismiss(TOO_LATE) if listener is None else listener.human_answered()
        return human_document(prompt, self._url(transfer_id, "key"))

    def key(self, transfer_id: str, form: Mapping[str, str]) -> str:
        listener = self._listeners.get(transfer_id)
        digits = form.get("Digits", "")
        prompt = Dismiss(TOO_LATE) if listener is None else listener.human_pressed(digits)
        return human_document(prompt, self._url(transfer_id, "key"))

    def status(self, transfer_id: str, form: Mapping[str, str]) -> None:
        listener = self._listeners.get(transfer_id)
        if listener is not None:
            listener.human_ended(form.get("CallStatus", ""))
