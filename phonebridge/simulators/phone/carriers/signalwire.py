"""SignalWire cXML ``<Connect><Stream>``, simulated — a TEST DOUBLE (CARRIERS.md §4).

Set-up is Twilio's with SignalWire's key: the form-encoded webhook is signed
with the project's **Signing Key** (Twilio's algorithm) under
``X-SignalWire-Signature``; the cXML answer's ``<Connect><Stream>`` must have
a ``wss://`` URL **without a query string** (SignalWire rejects both);
``codec`` picks ``PCMU@8000h`` / ``L16@16000h`` / ``L16@24000h``;
``authBearerToken`` comes back as ``Authorization: Bearer`` on the upgrade.

On the socket (Twilio-shaped, camelCase, numbers as strings): ``connected``
(``version`` ``"0.2.0"``), ``start`` (``mediaFormat.encoding``
``audio/x-mulaw`` or ``audio/x-L16``; no top-level ``streamSid``), ``media``
without a top-level ``streamSid``, ``dtmf``, ``mark`` echoes (pending marks
echoed on ``clear``), ``stop`` with only ``sequenceNumber``. L16 is sent
little-endian (the byte order is *unverified*, §4.3; this matches the
bridge's default reading). The app may send ``media``, ``mark``, ``clear``
and ``dtmf`` with exactly Twilio's keys and the active ``streamSid``;
anything else closes the socket, as Twilio's streamer does.

After a stream the bridge ended, the ``<Connect action>`` URL is requested
(signed); ``statusCallback`` gets ``stream-started``/``stream-stopped``.
"""

from __future__ import annotations

import base64
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

from phonebridge.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from phonebridge.simulators.phone.carriers.base import (
    DTMF_DIGITS,
    NO_CODE,
    AppAudio,
    AppClear,
    AppDtmf,
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
    forged,
    token,
)
from phonebridge.simulators.phone.carriers.rest import ApiRequest, FakeCarrierApi
from phonebridge.simulators.phone.twiml_reader import read_twiml
from phonebridge.telephony.signalwire.signature import SIGNATURE_HEADER, sign_form

CODECS: Final = {"PCMU@8000h": 8_000, "L16@16000h": 16_000, "L16@24000h": 24_000}
_SHAPES: Final[dict[str, tuple[frozenset[str], str | None, frozenset[str]]]] = {
    "media": (frozenset({"event", "streamSid", "media"}), "media", frozenset({"payload"})),
    "mark": (frozenset({"event", "streamSid", "mark"}), "mark", frozenset({"name"})),
    "clear": (frozenset({"event", "streamSid"}), None, frozenset()),
    "dtmf": (frozenset({"event", "streamSid", "dtmf"}), "dtmf", frozenset({"digit"})),
}


class SignalWireWire(CarrierWire):
    carrier: ClassVar[str] = "signalwire"

    def __init__(self, *, rate: int, call_sid: str, account_sid: str) -> None:
        super().__init__(rate)
        self.stream_sid = "MZ" + token()
        self.call_sid = call_sid
        self.account_sid = account_sid

    @property
    def mulaw(self) -> bool:
        return self.rate == 8_000

    def _next(self) -> str:
        return str(self.next_sequence())

    def opening(self, parameters: Mapping[str, str]) -> list[Frame]:
        start: dict[str, Any] = {
            "streamSid": self.stream_sid,
            "accountSid": self.account_sid,
            "callSid": self.call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {
                "encoding": "audio/x-mulaw" if self.mulaw else "audio/x-L16",
                "sampleRate": self.rate,
                "channels": 1,
            },
        }
        if parameters:
            start["customParameters"] = dict(parameters)
        return [
            json.dumps({"event": "connected", "protocol": "Call", "version": "0.2.0"}),
            json.dumps({"event": "start", "sequenceNumber": self._next(), "start": start}),
        ]

    def media(self, pcm16: bytes, timestamp_ms: int) -> Frame:
        chunk = self.next_chunk()
        payload = pcm16_to_ulaw(pcm16) if self.mulaw else pcm16
        return json.dumps(
            {
                "event": "media",
                "sequenceNumber": self._next(),
                "media": {
                    "track": "inbound",
                    "chunk": str(chunk),
                    "timestamp": str(timestamp_ms),
                    "payload": base64.b64encode(payload).decode(),
                },
            }
        )

    def dtmf(self, digit: str) -> Frame:
        return json.dumps(
            {
                "event": "dtmf",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "dtmf": {"digit": digit, "duration": 260},
            }
        )

    def mark_played(self, name: str) -> Frame:
        return json.dumps({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    def stop(self) -> Frame:
        return json.dumps({"event": "stop", "sequenceNumber": self._next()})

    def judge(self, raw: Frame) -> AppMessage:
        doc = app_json(raw, "SignalWire")
        event = doc.get("event")
        shape = _SHAPES.get(event) if isinstance(event, str) else None
        if shape is None:
            raise CarrierRejected(NO_CODE, f"unknown event {event!r:.40}")
        keys, inner_key, inner_keys = shape
        if set(doc) != keys:
            raise CarrierRejected(NO_CODE, f"{event}: keys {sorted(doc)} are not {sorted(keys)}")
        if doc["streamSid"] != self.stream_sid:
            raise CarrierRejected(NO_CODE, f"streamSid {doc['streamSid']!r:.60} is not active")
        if inner_key is None:
            return AppClear()
        inner = doc[inner_key]
        if not isinstance(inner, dict) or set(inner) != inner_keys:
            raise CarrierRejected(NO_CODE, f"{event}.{inner_key} must be {sorted(inner_keys)}")
        value = inner[next(iter(inner_keys))]
        if not isinstance(value, str):
            raise CarrierRejected(NO_CODE, f"{event}.{inner_key} value must be a string")
        if event == "mark":
            return AppMark(value)
        if event == "dtmf":
            if len(value) != 1 or value not in DTMF_DIGITS:
                raise CarrierRejected(NO_CODE, f"dtmf.digit {value!r:.10} is not one digit")
            return AppDtmf(value)
        data = app_base64(value, "media.payload")
        return AppAudio(ulaw_to_pcm16(data) if self.mulaw else app_l16(data))


class SignalWireFlavour(CarrierFlavour):
    carrier: ClassVar[str] = "signalwire"

    def __init__(
        self,
        signing_key: str,
        project_id: str,
        api: FakeCarrierApi | None,
        *,
        call_sid: str | None = None,
        answer_url: str | None = None,
        direction: str = "inbound",
    ) -> None:
        """``answer_url``/``call_sid``: a call the bridge placed (the Compatibility API
        double fetches the ``Url`` it was given, for the call it created)."""
        self.signing_key = signing_key
        self.project_id = project_id
        self.api = api
        self.call_sid = call_sid or "CA" + token()
        self.answer_url = answer_url
        self.direction = direction
        self.call: CarrierCall | None = None
        self.action_url: str | None = None
        self.status_callback: str | None = None

    def params(self, call: CarrierCall, status: str) -> dict[str, str]:
        r = call.report
        return {
            "CallSid": self.call_sid,
            "AccountSid": self.project_id,
            "From": r.from_,
            "To": r.to,
            "CallStatus": status,
            "Direction": self.direction,
            "ApiVersion": "2010-04-01",
        }

    def headers(self, call: CarrierCall, url: str, params: Mapping[str, str]) -> dict[str, str]:
        if call.webhook_auth == "missing":
            return {}
        key = self.signing_key if call.webhook_auth == "valid" else forged(self.signing_key)
        return {SIGNATURE_HEADER: sign_form(key, url, params)}

    async def post(self, call: CarrierCall, kind: str, url: str, params: dict[str, str]) -> Any:
        return await call.callback(
            kind, "POST", url, data=params, headers=self.headers(call, url, params)
        )

    async def _rest(self, request: ApiRequest) -> dict[str, Any]:
        call = self.call
        assert call is not None
        call.record_rest(request)
        if request.action in ("hangup", "transfer"):
            call.hang_up_remotely(request.action)
        return {"sid": self.call_sid, "status": "completed"}

    async def set_up(self, call: CarrierCall) -> StreamPlan | None:
        self.call = call
        call.report.call_sid = self.call_sid
        call.report.account_sid = self.project_id
        if self.api is not None:
            self.api.register("signalwire", self.call_sid, self._rest)
        url = self.answer_url or call.public("/signalwire/voice")
        params = self.params(call, "ringing")
        headers = self.headers(call, url, params)
        response = await call.webhook("POST", url, data=params, headers=headers)
        if response is None:
            return None
        try:
            answer = read_twiml(response.text, response.headers.get("content-type"))
            root = ET.fromstring(response.text)  # noqa: S314 (the bridge under test's answer)
        except (ET.ParseError, ValueError) as exc:
            call.error(NO_CODE, f"answer is not cXML: {exc}")
            call.ended("webhook_failed")
            return None
        call.report.twiml_verbs.extend(answer.verbs)
        call.report.said.extend(answer.said)
        call.report.dialled.extend(answer.dialled)
        stream = root.find("Connect/Stream")
        if stream is None:
            call.ended("answer")
            return None
        return self.plan(call, stream, answer.action_url)

    def plan(self, call: CarrierCall, stream: ET.Element, action: str | None) -> StreamPlan | None:
        url = stream.get("url", "")
        parts = urlsplit(url)
        codec = stream.get("codec", "PCMU@8000h")
        problem = (
            f"<Stream url> {url!r} is not wss://"
            if parts.scheme != "wss"
            else f"<Stream url> {url!r} carries a query string"
            if parts.query or "?" in url
            else f"codec {codec!r} (codec_error)"
            if codec not in CODECS
            else ""
        )
        if problem:
            call.error(NO_CODE, problem)
            call.ended("stream_failed")
            return None
        self.action_url = action
        self.status_callback = stream.get("statusCallback")
        headers: dict[str, str] = {}
        bearer = stream.get("authBearerToken")
        if bearer and call.socket_auth != "missing":
            value = bearer if call.socket_auth == "valid" else forged(bearer)
            headers["Authorization"] = f"Bearer {value}"
        parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        wire = SignalWireWire(
            rate=CODECS[codec], call_sid=self.call_sid, account_sid=self.project_id
        )
        call.report.stream_sid = wire.stream_sid
        return StreamPlan(url, call.routes.websocket(url), headers, wire, parameters)

    async def _status(self, call: CarrierCall, event: str) -> None:
        if self.status_callback and call.wire is not None:
            assert isinstance(call.wire, SignalWireWire)
            params = {
                "AccountSid": self.project_id,
                "CallSid": self.call_sid,
                "StreamSid": call.wire.stream_sid,
                "StreamEvent": event,
                "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            await self.post(call, event, self.status_callback, params)

    async def stream_opened(self, call: CarrierCall) -> None:
        await self._status(call, "stream-started")

    async def stream_ended(self, call: CarrierCall) -> None:
        by = call.report.ended_by
        if call.report.upgrade_status == 101:
            await self._status(call, "stream-stopped")
        if self.action_url and by in ("bridge", "protocol_error", "stream_failed"):
            response = await self.post(
                call, "action", self.action_url, self.params(call, "in-progress")
            )
            call.report.action_url = self.action_url
            if response is not None:
                call.report.action_status = response.status_code
                call.report.action_answer = response.text
                try:
                    answer = read_twiml(response.text, response.headers.get("content-type"))
                except ValueError:
                    return
                call.report.said.extend(answer.said)
                call.report.dialled.extend(answer.dialled)

    def close(self) -> None:
        if self.api is not None:
            self.api.unregister("signalwire", self.call_sid)
