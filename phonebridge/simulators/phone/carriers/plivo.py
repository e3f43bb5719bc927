"""Plivo's audio streaming, simulated — a TEST DOUBLE (CARRIERS.md §2).

Set-up: Plivo POSTs the answer URL (``CallUUID``, ``From``, ``To``,
``Direction``, ``CallStatus``, ``Event``…) signed with V3 —
``X-Plivo-Signature-V3`` and ``X-Plivo-Signature-Ma-V3`` over the URL and
parameters with ``X-Plivo-Signature-V3-Nonce`` — and reads the Plivo XML
answer. A ``<Stream>`` (URL = element text) must be ``wss://``; without
``bidirectional="true"`` the app's ``playAudio`` is dropped (§8.6); without
``keepCallAlive="true"`` the call moves past the stream at once (recorded as
an error); ``contentType`` picks µ-law 8 kHz or L16 8/16 kHz. The socket has
no documented handshake auth (§2.2): none is sent.

On the socket (camelCase, **no ``connected``**, ``sequenceNumber`` a number):
``start``, ``media`` every 20 ms (``chunk`` a number, ``timestamp`` an
epoch-ms string), ``dtmf``, ``playedStream`` for each ``checkpoint`` once the
audio before it played (**dropped, never sent, when a ``clearAudio`` flushed
it**), ``clearedAudio``. App messages: ``playAudio`` (``contentType`` +
``sampleRate`` pairs Plivo takes: µ-law only at 8000; L16 little-endian 8000 or
16000), ``checkpoint``, ``clearAudio``, ``sendDTMF``. What Plivo's docs do not
cover (a malformed message) closes the socket here. The stream ends by the
socket closing (no ``stop``), then a signed ``StopStream`` status callback.
A REST transfer of the A leg (``legs=aleg``, ``aleg_url``) ends the stream;
Plivo then fetches ``aleg_url`` (signed, ``aleg_method``) and runs the XML it
answers (``<Speak>`` recorded in ``said``, ``<Dial><Number>`` in ``dialled``).
"""

from __future__ import annotations

import base64
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from phonebridge.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from phonebridge.simulators.phone.carriers.base import (
    DTMF_DIGITS,
    NO_CODE,
    AppAudio,
    AppClear,
    AppDtmf,
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
    forged,
    to_rate,
    token,
    uuid_like,
)
from phonebridge.simulators.phone.carriers.rest import FakeCarrierApi
from phonebridge.telephony.plivo.protocol import parse_extra_headers
from phonebridge.telephony.plivo.signature import (
    MAIN_ACCOUNT_SIGNATURE_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    sign,
)

CONTENT_TYPES: Final = {
    "audio/x-mulaw;rate=8000": ("audio/x-mulaw", 8_000),
    "audio/x-l16;rate=8000": ("audio/x-l16", 8_000),
    "audio/x-l16;rate=16000": ("audio/x-l16", 16_000),
}
_PLAY_PAIRS: Final = {("audio/x-mulaw", 8_000), ("audio/x-l16", 8_000), ("audio/x-l16", 16_000)}


class PlivoWire(CarrierWire):
    carrier: ClassVar[str] = "plivo"
    echoes_marks_on_clear: ClassVar[bool] = False

    def __init__(
        self,
        *,
        encoding: str,
        rate: int,
        bidirectional: bool,
        call_uuid: str,
        account_id: str,
        extra_headers: str,
        send_stop: bool = False,
    ) -> None:
        super().__init__(rate)
        self.encoding = encoding
        self.bidirectional = bidirectional
        self.call_uuid = call_uuid
        self.account_id = account_id
        self.extra_headers = extra_headers
        self.stream_id = uuid_like()
        self.send_stop = send_stop  # Plivo's Java SDK models a 'stop'; the docs have none
        self._epoch_ms = int(time.time() * 1000)

    def opening(self, parameters: Mapping[str, str]) -> list[Frame]:
        return [
            json.dumps(
                {
                    "event": "start",
                    "sequenceNumber": self.next_sequence(),
                    "start": {
                        "callId": self.call_uuid,
                        "streamId": self.stream_id,
                        "accountId": self.account_id,
                        "tracks": ["inbound"],
                        "mediaFormat": {"encoding": self.encoding, "sampleRate": self.rate},
                    },
                    "extra_headers": self.extra_headers,
                }
            )
        ]

    def media(self, pcm16: bytes, timestamp_ms: int) -> Frame:
        chunk = self.next_chunk()
        payload = pcm16_to_ulaw(pcm16) if self.encoding == "audio/x-mulaw" else pcm16
        return json.dumps(
            {
                "event": "media",
                "sequenceNumber": self.next_sequence(),
                "streamId": self.stream_id,
                "media": {
                    "track": "inbound",
                    "timestamp": str(self._epoch_ms + timestamp_ms),
                    "chunk": chunk,
                    "payload": base64.b64encode(payload).decode(),
                },
                "extra_headers": self.extra_headers,
            }
        )

    def dtmf(self, digit: str) -> Frame:
        return json.dumps(
            {
                "event": "dtmf",
                "sequenceNumber": self.next_sequence(),
                "streamId": self.stream_id,
                "dtmf": {"digit": digit, "track": "inbound"},
            }
        )

    def mark_played(self, name: str) -> Frame:
        return json.dumps(
            {
                "event": "playedStream",
                "sequenceNumber": self.next_sequence(),
                "streamId": self.stream_id,
                "name": name,
            }
        )

    def cleared(self) -> list[Frame]:
        return [
            json.dumps(
                {
                    "event": "clearedAudio",
                    "sequenceNumber": self.next_sequence(),
                    "streamId": self.stream_id,
                }
            )
        ]

    def stop(self) -> Frame | None:
        if not self.send_stop:
            return None
        return json.dumps(
            {"event": "stop", "sequenceNumber": self.next_sequence(), "streamId": self.stream_id}
        )

    def judge(self, raw: Frame) -> AppMessage:
        doc = app_json(raw, "Plivo")
        event = doc.get("event")
        if event in ("checkpoint", "clearAudio") and doc.get("streamId") != self.stream_id:
            raise CarrierRejected(NO_CODE, f"{event}.streamId is not this stream")
        match event:
            case "playAudio":
                return self._play(doc.get("media"))
            case "checkpoint":
                name = doc.get("name")
                if not isinstance(name, str) or not name:
                    raise CarrierRejected(NO_CODE, "checkpoint.name must be a string")
                return AppMark(name)
            case "clearAudio":
                return AppClear()
            case "sendDTMF":
                digits = doc.get("dtmf")
                if (
                    not isinstance(digits, str)
                    or not digits
                    or any(d not in DTMF_DIGITS for d in digits)
                ):
                    raise CarrierRejected(NO_CODE, "sendDTMF.dtmf must be DTMF digits")
                return AppDtmf(digits)
            case _:
                raise CarrierRejected(NO_CODE, f"unknown event {event!r:.40}")

    def _play(self, media: object) -> AppMessage:
        if not isinstance(media, dict):
            raise CarrierRejected(NO_CODE, "playAudio.media must be an object")
        kind, rate_value, payload = (
            media.get("contentType"),
            media.get("sampleRate"),
            media.get("payload"),
        )
        rate = (
            int(rate_value) if isinstance(rate_value, str) and rate_value.isdigit() else rate_value
        )
        if (kind, rate) not in _PLAY_PAIRS:
            raise CarrierRejected(NO_CODE, f"playAudio {kind!r:.30} at {rate_value!r:.10} Hz")
        data = app_base64(payload, "playAudio.media.payload")
        if not self.bidirectional:
            return AppIgnored("playAudio dropped: the stream is not bidirectional")
        assert isinstance(rate, int)
        pcm = ulaw_to_pcm16(data) if kind == "audio/x-mulaw" else app_l16(data)
        return AppAudio(to_rate(pcm, rate, self.rate))


def read_stream_xml(text: str) -> tuple[ET.Element | None, tuple[str, ...]]:
    """The ``<Stream>`` element and the top-level verbs (``ValueError`` if not Plivo XML)."""
    root = ET.fromstring(text)  # noqa: S314 (the bridge under test's own answer)
    if root.tag != "Response":
        raise ValueError(f"root element is <{root.tag}>")
    return root.find("Stream"), tuple(child.tag for child in root)


def run_document(call: CarrierCall, root: ET.Element) -> None:
    """Record ``<Speak>`` (said) and ``<Dial>``'s ``<Number>`` (dialled; Plivo writes no
    ``+``) or SIP ``<User>``."""
    call.report.said.extend((e.text or "").strip() for e in root.iter("Speak"))
    for dial in root.iter("Dial"):
        for target in dial:
            text = (target.text or "").strip()
            call.report.dialled.append("+" + text if target.tag == "Number" else text)


class PlivoFlavour(CarrierFlavour):
    carrier: ClassVar[str] = "plivo"

    def __init__(
        self,
        auth_id: str,
        auth_token: str,
        api: FakeCarrierApi | None,
        *,
        call_uuid: str | None = None,
        answer_url: str | None = None,
    ) -> None:
        """``answer_url``/``call_uuid``: a call the bridge placed (the Call API double
        fetches the ``answer_url`` it was given, for the call it created: ``Direction``
        outbound, with the request's UUID)."""
        self.auth_id = auth_id
        self.auth_token = auth_token
        self.api = api
        self.call_uuid = call_uuid or uuid_like()
        self.answer_url = answer_url
        self.call: CarrierCall | None = None
        self.status_callback: str | None = None
        self.transfer: tuple[str, str] | None = None  # (aleg_url, aleg_method) of a transfer

    def params(self, call: CarrierCall, status: str, **extra: str) -> dict[str, str]:
        r = call.report
        outbound = (
            {
                "Direction": "outbound",
                "RequestUUID": self.call_uuid,
                "ALegUUID": self.call_uuid,
                "ALegRequestUUID": self.call_uuid,
            }
            if self.answer_url
            else {"Direction": "inbound"}
        )
        return {
            "CallUUID": self.call_uuid,
            "From": r.from_.lstrip("+"),
            "To": r.to.lstrip("+"),
            **outbound,
            "CallStatus": status,
            "Event": "StartApp",
            **extra,
        }

    def headers(self, call: CarrierCall, url: str, params: Mapping[str, str]) -> dict[str, str]:
        if call.webhook_auth == "missing":
            return {}
        secret = self.auth_token if call.webhook_auth == "valid" else forged(self.auth_token)
        nonce = token()
        signature = sign(secret, "POST", url, params, nonce)
        return {
            SIGNATURE_HEADER: signature,
            MAIN_ACCOUNT_SIGNATURE_HEADER: signature,
            NONCE_HEADER: nonce,
        }

    async def _rest(self, request: Any) -> dict[str, Any]:
        call = self.call
        assert call is not None
        call.record_rest(request)
        if request.action == "transfer":
            body = request.body
            method = str(body.get("aleg_method") or "POST").upper()
            self.transfer = (str(body.get("aleg_url", "")), method)
        call.hang_up_remotely(request.action)
        return {"message": "call hung up" if request.action == "hangup" else "call transferred"}

    async def set_up(self, call: CarrierCall) -> StreamPlan | None:
        self.call = call
        call.report.call_sid = self.call_uuid
        call.report.account_sid = self.auth_id
        if self.api is not None:
            self.api.register("plivo", self.call_uuid, self._rest)
        url = self.answer_url or call.public("/plivo/voice")
        params = self.params(call, "in-progress" if self.answer_url else "ringing")
        headers = self.headers(call, url, params)
        response = await call.webhook("POST", url, data=params, headers=headers)
        if response is None:
            return None
        try:
            stream, verbs = read_stream_xml(response.text)
        except (ET.ParseError, ValueError) as exc:
            call.error(NO_CODE, f"answer is not Plivo XML: {exc}")
            call.ended("webhook_failed")
            return None
        call.report.twiml_verbs.extend(verbs)
        run_document(call, ET.fromstring(response.text))  # noqa: S314
        if stream is None:
            call.ended("answer")
            return None
        return self.plan(call, stream)

    def plan(self, call: CarrierCall, stream: ET.Element) -> StreamPlan | None:
        url = (stream.text or "").strip()
        if not url.startswith("wss://"):
            call.error(NO_CODE, f"<Stream> URL {url!r} is not wss://")
            call.ended("stream_failed")
            return None
        if stream.get("keepCallAlive") != "true":
            call.error(NO_CODE, "<Stream> without keepCallAlive: the call moves on at once")
        content = (stream.get("contentType") or "audio/x-l16;rate=8000").replace(" ", "").lower()
        if content not in CONTENT_TYPES:
            call.error(NO_CODE, f"<Stream contentType> {content!r} is not one Plivo streams")
            call.ended("stream_failed")
            return None
        encoding, rate = CONTENT_TYPES[content]
        bidirectional = stream.get("bidirectional") == "true"
        if bidirectional and stream.get("audioTrack", "inbound") != "inbound":
            call.error(NO_CODE, "bidirectional <Stream> with audioTrack other than inbound")
            call.ended("stream_failed")
            return None
        self.status_callback = stream.get("statusCallbackUrl")
        extra = stream.get("extraHeaders") or ""
        wire = PlivoWire(
            encoding=encoding,
            rate=rate,
            bidirectional=bidirectional,
            call_uuid=self.call_uuid,
            account_id=self.auth_id,
            extra_headers=extra,
        )
        call.report.stream_sid = wire.stream_id
        return StreamPlan(url, call.routes.websocket(url), {}, wire, parse_extra_headers(extra))

    async def _status(self, call: CarrierCall, event: str) -> None:
        if not self.status_callback or call.wire is None:
            return
        assert isinstance(call.wire, PlivoWire)
        params = {
            "Event": event,
            "CallUUID": self.call_uuid,
            "StreamID": call.wire.stream_id,
            "Timestamp": str(int(time.time())),
        }
        url = self.status_callback
        await call.callback(
            event, "POST", url, data=params, headers=self.headers(call, url, params)
        )

    async def stream_opened(self, call: CarrierCall) -> None:
        await self._status(call, "StartStream")

    async def stream_ended(self, call: CarrierCall) -> None:
        if call.report.ended_by == "stream_failed":
            await self._status(call, "DroppedStream")
        elif call.report.upgrade_status == 101:
            await self._status(call, "StopStream")
        if self.transfer is not None and call.remote_hangup_reason == "transfer":
            await self._fetch_transfer(call, *self.transfer)

    async def _fetch_transfer(self, call: CarrierCall, url: str, method: str) -> None:
        """The A leg moved to ``url``: fetch its XML (signed) and run it."""
        call.report.action_url = url
        if method != "POST":  # the bridge always asks POST; a GET is not simulated
            call.error(NO_CODE, f"aleg_method {method!r} (the simulator fetches POST only)")
            return
        params = self.params(call, "in-progress", Event="Transfer")
        headers = self.headers(call, url, params)
        response = await call.callback("transfer", "POST", url, data=params, headers=headers)
        if response is None:
            return
        call.report.action_status = response.status_code
        call.report.action_answer = response.text
        try:
            root = ET.fromstring(response.text)  # noqa: S314 (the bridge under test's answer)
        except ET.ParseError as exc:
            call.error(NO_CODE, f"transfer answer is not Plivo XML: {exc}")
            return
        if root.tag != "Response":
            call.error(NO_CODE, f"transfer answer's root element is <{root.tag}>")
            return
        call.report.twiml_verbs.extend(child.tag for child in root)
        run_document(call, root)

    def close(self) -> None:
        if self.api is not None:
            self.api.unregister("plivo", self.call_uuid)
