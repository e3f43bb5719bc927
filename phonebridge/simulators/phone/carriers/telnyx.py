"""Telnyx Call Control and its media stream, simulated — a TEST DOUBLE (CARRIERS.md §1).

Set-up is Call Control's (the bridge's choice, :mod:`phonebridge.telephony.
telnyx.callcontrol`): Telnyx POSTs a ``call.initiated`` webhook signed with
Ed25519 (``telnyx-signature-ed25519`` over ``timestamp|raw body``,
``telnyx-timestamp``) and the app acts over REST — here on
:class:`~.rest.FakeCarrierApi`: ``answer`` (→ a signed ``call.answered``
webhook), ``streaming_start`` (→ the socket is opened with the
``x-telnyx-streaming-auth-token`` header, then ``streaming.started``),
``speak``, ``hangup``, ``transfer``, ``streaming_stop``. A ``speak`` is
played (recorded in ``said``) and answered with a signed
``call.speak.ended``; the call stays up until a ``hangup`` or ``transfer``
(before the stream, or after a stream the bridge ended: Call Control runs
nothing by itself, so a call no command ends is left in silence, recorded as
an error once ``io_timeout`` has passed).

On the socket (snake_case, ``sequence_number`` a string, ``sample_rate`` a
number): ``connected`` (the auth token repeated), ``start``, ``media`` every
20 ms in ``stream_codec`` — **L16 is big-endian** (RTP) at the leg's rate,
PCMU/PCMA at 8 kHz — ``dtmf``, ``mark`` echoes, ``stop``. App ``media`` plays
only in ``rtp`` bidirectional mode (in ``mp3`` mode Telnyx drops it, §8.6)
and must carry 20 ms … 30 s of ``stream_bidirectional_codec`` at
``…_sampling_rate``. What Telnyx refuses it reports with an ``error`` event
and the stream goes on (the error codes here are the simulator's own
numbering: Telnyx's are *unverified*). ``clear`` flushes the buffer and
returns pending marks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from phonebridge.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from phonebridge.audio.pcm import alaw_to_pcm16, pcm16_to_alaw, swap16
from phonebridge.simulators.phone.carriers.base import (
    AppAudio,
    AppClear,
    AppIgnored,
    AppMark,
    AppMessage,
    CarrierCall,
    CarrierFlavour,
    CarrierRejected,
    CarrierWire,
    Frame,
    StreamPlan,
    app_base64,
    app_json,
    app_l16,
    app_mark_name,
    forged,
    to_rate,
    token,
    uuid_like,
)
from phonebridge.simulators.phone.carriers.rest import ApiRequest, FakeCarrierApi
from phonebridge.telephony.telnyx.signature import (
    SIGNATURE_HEADER,
    STREAM_TOKEN_HEADER,
    TIMESTAMP_HEADER,
    sign,
)

# The simulator's own error numbering (Telnyx's codes are unverified).
MALFORMED_FRAME: Final = 1
INVALID_MEDIA: Final = 2
MIN_MS: Final = 20
MAX_MS: Final = 30_000
_END_COMMANDS: Final = frozenset({"hangup", "transfer", "streaming_stop", "reject"})


class TelnyxWire(CarrierWire):
    carrier: ClassVar[str] = "telnyx"
    closes_on_reject: ClassVar[bool] = False

    def __init__(
        self,
        *,
        rate: int,
        codec: str,
        out_codec: str,
        out_rate: int,
        rtp: bool,
        call_control_id: str,
        from_number: str,
        to_number: str,
        client_state: str | None,
        auth_token: str | None,
    ) -> None:
        super().__init__(rate)
        self.codec = codec  # what Telnyx streams to the app: L16 (at rate), PCMU, PCMA
        self.out_codec = out_codec
        self.out_rate = out_rate
        self.rtp = rtp
        self.stream_id = uuid_like()
        self.call_control_id = call_control_id
        self.from_number = from_number
        self.to_number = to_number
        self.client_state = client_state
        self.auth_token = auth_token

    def _next(self) -> str:
        return str(self.next_sequence())

    def opening(self, parameters: Mapping[str, str]) -> list[Frame]:
        connected: dict[str, Any] = {"event": "connected", "version": "1.0.0"}
        if self.auth_token is not None:
            connected[STREAM_TOKEN_HEADER] = self.auth_token
        start = {
            "event": "start",
            "sequence_number": self._next(),
            "stream_id": self.stream_id,
            "start": {
                "user_id": uuid_like(),
                "call_control_id": self.call_control_id,
                "call_session_id": uuid_like(),
                "from": self.from_number,
                "to": self.to_number,
                "tags": [],
                "client_state": self.client_state,
                "custom_parameters": dict(parameters),
                "media_format": {"encoding": self.codec, "sample_rate": self.rate, "channels": 1},
            },
        }
        return [json.dumps(connected), json.dumps(start)]

    def _encode(self, pcm16: bytes) -> bytes:
        if self.codec == "L16":
            return swap16(pcm16)
        return pcm16_to_alaw(pcm16) if self.codec == "PCMA" else pcm16_to_ulaw(pcm16)

    def media(self, pcm16: bytes, timestamp_ms: int) -> Frame:
        chunk = self.next_chunk()
        return json.dumps(
            {
                "event": "media",
                "sequence_number": self._next(),
                "stream_id": self.stream_id,
                "media": {
                    "track": "inbound",
                    "chunk": str(chunk),
                    "timestamp": str(timestamp_ms),
                    "payload": base64.b64encode(self._encode(pcm16)).decode(),
                },
            }
        )

    def dtmf(self, digit: str) -> Frame:
        return json.dumps(
            {
                "event": "dtmf",
                "sequence_number": self._next(),
                "stream_id": self.stream_id,
                "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "dtmf": {"digit": digit},
            }
        )

    def mark_played(self, name: str) -> Frame:
        return json.dumps(
            {
                "event": "mark",
                "sequence_number": self._next(),
                "stream_id": self.stream_id,
                "mark": {"name": name},
            }
        )

    def stop(self) -> Frame:
        return json.dumps(
            {
                "event": "stop",
                "sequence_number": self._next(),
                "stream_id": self.stream_id,
                "stop": {"user_id": uuid_like(), "call_control_id": self.call_control_id},
            }
        )

    def error_event(self, rejected: CarrierRejected) -> Frame:
        title = "malformed_frame" if rejected.code == MALFORMED_FRAME else "invalid_media"
        return json.dumps(
            {
                "event": "error",
                "sequence_number": self._next(),
                "stream_id": self.stream_id,
                "payload": {"code": rejected.code, "title": title, "detail": str(rejected)},
            }
        )

    def judge(self, raw: Frame) -> AppMessage:
        doc = app_json(raw, "Telnyx", MALFORMED_FRAME)
        event = doc.get("event")
        stream_id = doc.get("stream_id")
        if stream_id is not None and stream_id != self.stream_id:
            raise CarrierRejected(MALFORMED_FRAME, f"stream_id {stream_id!r:.60} is not this one")
        match event:
            case "media":
                return self._media(doc.get("media"))
            case "mark":
                return AppMark(app_mark_name(doc.get("mark"), "mark.name", MALFORMED_FRAME))
            case "clear":
                return AppClear()
            case _:
                raise CarrierRejected(MALFORMED_FRAME, f"unknown event {event!r:.40}")

    def _media(self, media: object) -> AppMessage:
        payload = media.get("payload") if isinstance(media, dict) else None
        data = app_base64(payload, "media.payload", INVALID_MEDIA)
        if not self.rtp:
            return AppIgnored("media dropped: bidirectional mode is mp3, not rtp")
        if self.out_codec == "L16":
            pcm, rate = swap16(app_l16(data, INVALID_MEDIA)), self.out_rate
        elif self.out_codec == "PCMA":
            pcm, rate = alaw_to_pcm16(data), 8_000
        else:
            pcm, rate = ulaw_to_pcm16(data), 8_000
        ms = len(pcm) * 1000 // (2 * rate)
        if not MIN_MS <= ms <= MAX_MS:
            raise CarrierRejected(INVALID_MEDIA, f"media of {ms} ms (Telnyx takes 20 ms to 30 s)")
        return AppAudio(to_rate(pcm, rate, self.rate))


class TelnyxFlavour(CarrierFlavour):
    carrier: ClassVar[str] = "telnyx"

    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        api: FakeCarrierApi,
        *,
        events_url: str | None = None,
        direction: str = "incoming",
        client_state: str | None = None,
    ) -> None:
        self.private_key = private_key
        self.api = api
        # A dialled call's events go to the dial's webhook_url (else the app's
        # /telnyx/voice) and carry the last client_state a command set (base64).
        self.events_url = events_url
        self.direction = direction
        self.client_state = client_state
        self.commands: asyncio.Queue[ApiRequest] = asyncio.Queue()
        self.call_control_id = "v3:" + token()
        self.call: CarrierCall | None = None
        self.streaming = False

    async def _command(self, request: ApiRequest) -> dict[str, Any]:
        call = self.call
        assert call is not None
        call.record_rest(request)
        state = request.body.get("client_state")
        if isinstance(state, str):
            self.client_state = state  # Telnyx: it rides on every later webhook
        if request.action == "transfer":
            call.report.dialled.append(str(request.body.get("to", "")))
        if request.action == "speak":
            call.report.said.append(str(request.body.get("payload", "")))
        if self.streaming and request.action in _END_COMMANDS:
            call.hang_up_remotely(request.action)
        else:
            self.commands.put_nowait(request)
        return {"data": {"result": "ok"}}

    def _payload(self, call: CarrierCall, state: str) -> dict[str, Any]:
        r = call.report
        return {
            "call_control_id": self.call_control_id,
            "call_leg_id": r.call_sid,
            "call_session_id": r.account_sid,
            "connection_id": "1684641123236054244",
            "client_state": self.client_state,
            "from": r.from_,
            "to": r.to,
            "direction": self.direction,
            "state": state,
        }

    async def webhook(self, call: CarrierCall, event_type: str, **extra: Any) -> int | None:
        payload = {**self._payload(call, "parked"), **extra}
        url = self.events_url or call.public("/telnyx/voice")
        body = json.dumps(
            {
                "data": {
                    "record_type": "event",
                    "event_type": event_type,
                    "id": uuid_like(),
                    "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
                    "payload": payload,
                },
                "meta": {"attempt": 1, "delivered_to": url},
            }
        ).encode()
        headers = {"content-type": "application/json", "user-agent": "telnyx-webhooks"}
        if call.webhook_auth != "missing":
            stamp = str(int(time.time()))
            key = self.private_key if call.webhook_auth == "valid" else Ed25519PrivateKey.generate()
            headers[SIGNATURE_HEADER] = sign(key, body, stamp)
            headers[TIMESTAMP_HEADER] = stamp
        if event_type == "call.initiated":
            response = await call.webhook(
                "POST", url, ok=range(200, 300), document=False, content=body, headers=headers
            )
        else:
            response = await call.callback(event_type, "POST", url, content=body, headers=headers)
        return None if response is None else response.status_code

    async def set_up(self, call: CarrierCall) -> StreamPlan | None:
        self.call = call
        call.report.account_sid = token()
        self.api.register("telnyx", self.call_control_id, self._command)
        if await self.webhook(call, "call.initiated") is None:
            return None
        while True:
            try:
                request = await asyncio.wait_for(self.commands.get(), call.timeout)
            except TimeoutError:
                call.error(0, "no Call Control command after call.initiated")
                call.ended("no_answer")
                return None
            body = request.body
            match request.action:
                case "answer":
                    await self.webhook(call, "call.answered")
                    if "stream_url" in body:
                        return self.plan(call, body)
                case "streaming_start":
                    return self.plan(call, body)
                case _:
                    if await self.obey(call, request, "before the stream"):
                        return None

    async def obey(self, call: CarrierCall, request: ApiRequest, when: str) -> bool:
        """A command on a call with no stream; True when it ended the call."""
        match request.action:
            case "speak":
                # Played (recorded in ``said`` as it arrived), then Telnyx says so.
                await self.webhook(call, "call.speak.ended", status="completed")
            case "hangup" | "reject":
                call.ended(f"rest_{request.action}")
                await self.webhook(call, "call.hangup", hangup_cause="normal_clearing")
                return True
            case "transfer":
                call.ended("transferred")
                return True
            case _:
                call.report.notes.append(f"Call Control {request.action!r} {when}")
        return False

    async def after_stream(self, call: CarrierCall) -> None:
        """The call outlived its stream: run the bridge's commands until one ends it."""
        while True:
            try:
                request = await asyncio.wait_for(self.commands.get(), call.timeout)
            except TimeoutError:
                call.error(0, "no Call Control command ended the call after its stream")
                return
            if await self.obey(call, request, "after the stream"):
                return

    def plan(self, call: CarrierCall, body: Mapping[str, Any]) -> StreamPlan | None:
        url = str(body.get("stream_url", ""))
        codec = str(body.get("stream_codec") or "default")
        codec = codec if codec in ("L16", "PCMU", "PCMA") else "PCMU"  # the rest fall back
        rate = call.rate if codec == "L16" else 8_000
        out_codec = str(body.get("stream_bidirectional_codec") or "PCMU")
        out_rate = int(body.get("stream_bidirectional_sampling_rate") or 8_000)
        if out_codec not in ("L16", "PCMU", "PCMA") or out_rate not in (8_000, 16_000, 24_000):
            call.error(0, f"unsupported bidirectional {out_codec} at {out_rate} Hz")
            call.ended("stream_failed")
            return None
        if not url.startswith(("wss://", "ws://")):
            call.error(0, f"stream_url {url!r} is not a WebSocket URL")
            call.ended("stream_failed")
            return None
        auth = body.get("stream_auth_token")
        auth_token = auth if isinstance(auth, str) else None
        params_list = body.get("custom_parameters") or []
        parameters = {
            str(p.get("name")): str(p.get("value")) for p in params_list if isinstance(p, dict)
        }
        headers: dict[str, str] = {}
        sent_token = auth_token
        if auth_token is not None and call.socket_auth != "valid":
            sent_token = None if call.socket_auth == "missing" else forged(auth_token)
        if sent_token is not None:
            headers[STREAM_TOKEN_HEADER] = sent_token
        call.report.stream_sid = ""
        wire = TelnyxWire(
            rate=rate,
            codec=codec,
            out_codec=out_codec if out_codec != "L16" else "L16",
            out_rate=out_rate if out_codec == "L16" else 8_000,
            rtp=body.get("stream_bidirectional_mode") == "rtp",
            call_control_id=self.call_control_id,
            from_number=call.report.from_,
            to_number=call.report.to,
            client_state=body.get("client_state")
            if isinstance(body.get("client_state"), str)
            else None,
            auth_token=sent_token,
        )
        call.report.stream_sid = wire.stream_id
        call.report.answer_document = json.dumps(dict(body))
        return StreamPlan(url, call.routes.websocket(url), headers, wire, parameters)

    async def stream_opened(self, call: CarrierCall) -> None:
        self.streaming = True
        await self.webhook(call, "streaming.started")

    async def stream_ended(self, call: CarrierCall) -> None:
        self.streaming = False
        if call.report.ended_by == "stream_failed":
            await self.webhook(call, "streaming.failed")
            return
        await self.webhook(call, "streaming.stopped")
        if call.call_over:
            await self.webhook(call, "call.hangup", hangup_cause="normal_clearing")
        elif call.remote_hangup_reason != "transfer":
            await self.after_stream(call)

    def close(self) -> None:
        self.api.unregister("telnyx", self.call_control_id)
