"""Vonage Voice API WebSockets, simulated — a TEST DOUBLE (CARRIERS.md §3).

Set-up: Vonage GETs the answer URL with ``to``, ``from`` (digits, **no
``+``**), ``uuid`` and ``conversation_uuid``, signed with an HS256 JWT in
``Authorization: Bearer`` (the signature secret; no ``payload_hash`` on a GET),
and runs the NCCO it gets back: ``talk`` is recorded, ``connect`` to a phone
is recorded as a transfer, ``connect`` to a ``websocket`` endpoint opens the
socket — with ``authorization: {"type": "vonage"}`` the upgrade carries a
fresh signed JWT, with ``{"type": "custom", "value": v}`` the value verbatim.

On the socket: a text ``websocket:connected`` (``content-type`` and the NCCO
``headers`` flattened at the top level), then **binary PCM16 LE, exactly one
20 ms frame per message**, ``websocket:dtmf`` text events. The app must send
exactly one 20 ms frame per binary message (anything else is refused and the
socket closed — the simulator's strict reading of "must"), ``{"action":
"clear"}`` (→ ``websocket:cleared``; pending notifies dropped) and
``{"action": "notify", "payload": {…}}`` (→ ``websocket:notify`` with the
payload once the audio before it played). The playback queue holds 1024
frames (~20 s, the older documented depth); more is dropped and recorded.

There is no ``stop``: the call ending closes the socket, then a signed
``completed`` event goes to the application's event URL. When the *app*
closes the socket (or the upgrade fails), Vonage POSTs ``disconnected``
(``failed``) to the ``connect``'s ``eventUrl`` and runs the NCCO it answers.
REST ``PUT /v1/calls/{uuid}`` hangs up or transfers (:mod:`.rest`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Final
from urllib.parse import urlencode

from phonebridge.simulators.phone.carriers.base import (
    NO_CODE,
    AppAudio,
    AppClear,
    AppMark,
    AppMessage,
    CarrierCall,
    CarrierFlavour,
    CarrierRejected,
    CarrierWire,
    Frame,
    StreamPlan,
    app_json_text,
    forged,
    token,
    uuid_like,
)
from phonebridge.simulators.phone.carriers.rest import ApiRequest, FakeCarrierApi
from phonebridge.telephony.vonage.signature import sign

CONTENT_TYPE: Final = re.compile(r"audio/l16;\s*rate=(8000|16000|24000)", re.IGNORECASE)
QUEUE_FRAMES: Final = 1024


class VonageWire(CarrierWire):
    carrier: ClassVar[str] = "vonage"
    echoes_marks_on_clear: ClassVar[bool] = False
    max_buffered_ms: int = QUEUE_FRAMES * 20

    def __init__(self, *, rate: int, headers: Mapping[str, Any]) -> None:
        super().__init__(rate)
        self.headers = dict(headers)

    def opening(self, parameters: Mapping[str, str]) -> list[Frame]:
        return [
            json.dumps(
                {
                    "event": "websocket:connected",
                    "content-type": f"audio/l16;rate={self.rate}",
                    **self.headers,
                }
            )
        ]

    def media(self, pcm16: bytes, timestamp_ms: int) -> Frame:
        return pcm16

    def dtmf(self, digit: str) -> Frame:
        return json.dumps({"event": "websocket:dtmf", "digit": digit, "duration": 260})

    def mark_played(self, name: str) -> Frame:
        return json.dumps({"event": "websocket:notify", "payload": json.loads(name)})

    def cleared(self) -> list[Frame]:
        return [json.dumps({"event": "websocket:cleared"})]

    def stop(self) -> Frame | None:
        return None

    def judge(self, raw: Frame) -> AppMessage:
        if isinstance(raw, bytes):
            if len(raw) != self.frame_bytes:
                raise CarrierRejected(
                    NO_CODE,
                    f"binary message of {len(raw)} bytes: Vonage takes exactly one 20 ms "
                    f"frame ({self.frame_bytes} bytes at {self.rate} Hz)",
                )
            return AppAudio(raw)
        doc = app_json_text(raw)
        match doc.get("action"):
            case "clear":
                return AppClear()
            case "notify":
                payload = doc.get("payload")
                if not isinstance(payload, dict):
                    raise CarrierRejected(NO_CODE, "notify.payload must be an object")
                return AppMark(json.dumps(payload))
            case other:
                raise CarrierRejected(NO_CODE, f"unknown action {other!r:.40}")


def _ncco(text: str) -> list[dict[str, Any]]:
    doc = json.loads(text)
    if not isinstance(doc, list) or not all(isinstance(a, dict) for a in doc):
        raise ValueError("an NCCO is a JSON array of objects")
    return doc


class VonageFlavour(CarrierFlavour):
    carrier: ClassVar[str] = "vonage"

    def __init__(
        self,
        signature_secret: str,
        api_key: str,
        api: FakeCarrierApi | None,
        *,
        call_uuid: str | None = None,
        conversation_uuid: str | None = None,
        answer_url: str | None = None,
        completed_event: bool = True,
    ) -> None:
        """``call_uuid``/``answer_url``: a call the bridge placed (the Voice API double
        fetches the ``answer_url`` it was given, and sends the call's own events itself:
        ``completed_event`` False)."""
        self.secret = signature_secret
        self.api_key = api_key
        self.api = api
        self.uuid = call_uuid or uuid_like()
        self.conversation_uuid = conversation_uuid or "CON-" + uuid_like()
        self.answer_url = answer_url
        self.completed_event = completed_event
        self.call: CarrierCall | None = None
        self.event_url: str | None = None
        self.endpoint: dict[str, Any] = {}

    def jwt(self, call: CarrierCall, body: bytes | None, mode: str) -> dict[str, str]:
        if mode == "missing":
            return {}
        secret = self.secret if mode == "valid" else forged(self.secret)
        value = sign(secret, time.time(), api_key=self.api_key, jti=token(), body=body)
        return {"Authorization": f"Bearer {value}"}

    def run_ncco(self, call: CarrierCall, ncco: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Record ``talk``/phone or SIP ``connect``; the websocket endpoint's ``connect``."""
        for action in ncco:
            call.report.twiml_verbs.append(str(action.get("action")))
            if action.get("action") == "talk":
                call.report.said.append(str(action.get("text", "")))
            if action.get("action") == "connect":
                for endpoint in action.get("endpoint") or []:
                    if isinstance(endpoint, dict) and endpoint.get("type") == "websocket":
                        return action
                    if isinstance(endpoint, dict) and endpoint.get("type") == "phone":
                        call.report.dialled.append("+" + str(endpoint.get("number", "")))
                    if isinstance(endpoint, dict) and endpoint.get("type") == "sip":
                        call.report.dialled.append(str(endpoint.get("uri", "")))
        return None

    async def _rest(self, request: ApiRequest) -> dict[str, Any]:
        call = self.call
        assert call is not None
        call.record_rest(request)
        destination = request.body.get("destination")
        if request.action == "transfer" and isinstance(destination, dict):
            ncco = destination.get("ncco")
            if isinstance(ncco, list):
                self.run_ncco(call, [a for a in ncco if isinstance(a, dict)])
        if request.action in ("hangup", "transfer"):
            call.hang_up_remotely(request.action)
        return {}

    async def set_up(self, call: CarrierCall) -> StreamPlan | None:
        self.call = call
        call.report.call_sid = self.uuid
        call.report.account_sid = self.api_key
        if self.api is not None:
            self.api.register("vonage", self.uuid, self._rest)
        query = {
            "to": call.report.to.lstrip("+"),
            "from": call.report.from_.lstrip("+"),
            "uuid": self.uuid,
            "conversation_uuid": self.conversation_uuid,
            "region_url": "https://api-eu-1.vonage.com",
        }
        if self.answer_url is not None:
            joiner = "&" if "?" in self.answer_url else "?"
            url = self.answer_url + joiner + urlencode(query)
        else:
            url = call.public("/vonage/answer") + "?" + urlencode(query)
        response = await call.webhook("GET", url, headers=self.jwt(call, None, call.webhook_auth))
        if response is None:
            return None
        try:
            ncco = _ncco(response.text)
        except ValueError as exc:
            call.error(NO_CODE, f"answer is not an NCCO: {exc}")
            call.ended("webhook_failed")
            return None
        connect = self.run_ncco(call, ncco)
        if connect is None:
            call.ended("answer")
            return None
        return self.plan(call, connect)

    def plan(self, call: CarrierCall, connect: dict[str, Any]) -> StreamPlan | None:
        endpoint = next(e for e in connect["endpoint"] if e.get("type") == "websocket")
        self.endpoint = endpoint
        urls = connect.get("eventUrl")
        self.event_url = urls[0] if isinstance(urls, list) and urls else None
        uri = str(endpoint.get("uri", ""))
        found = CONTENT_TYPE.fullmatch(str(endpoint.get("content-type", "")).replace(" ", ""))
        if not uri.startswith(("wss://", "ws://")) or found is None:
            call.error(NO_CODE, f"websocket endpoint {uri!r} / {endpoint.get('content-type')!r}")
            call.ended("stream_failed")
            return None
        headers: dict[str, str] = {}
        authorization = endpoint.get("authorization")
        if isinstance(authorization, dict) and authorization.get("type") == "vonage":
            headers = self.jwt(call, None, call.socket_auth)
        elif isinstance(authorization, dict) and authorization.get("type") == "custom":
            value = str(authorization.get("value", ""))
            if call.socket_auth != "missing":
                headers["Authorization"] = value if call.socket_auth == "valid" else forged(value)
        ncco_headers = endpoint.get("headers")
        wire = VonageWire(
            rate=int(found.group(1)),
            headers=ncco_headers if isinstance(ncco_headers, dict) else {},
        )
        parameters = {k: str(v) for k, v in wire.headers.items()}
        return StreamPlan(uri, call.routes.websocket(uri), headers, wire, parameters)

    async def _event(self, call: CarrierCall, url: str, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        headers = {"content-type": "application/json", **self.jwt(call, body, call.webhook_auth)}
        response = await call.callback(
            str(doc["status"]), "POST", url, content=body, headers=headers
        )
        if response is not None and response.status_code == 200 and response.text.strip():
            try:
                self.run_ncco(call, _ncco(response.text))
            except ValueError:
                call.report.notes.append(f"{doc['status']} event answered with no NCCO")

    async def stream_ended(self, call: CarrierCall) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        base = {
            "uuid": self.uuid,
            "conversation_uuid": self.conversation_uuid,
            "timestamp": stamp,
        }
        by = call.report.ended_by
        if by in ("bridge", "protocol_error", "stream_failed") and self.event_url:
            status = "failed" if by == "stream_failed" else "disconnected"
            await self._event(
                call,
                self.event_url,
                {
                    **base,
                    "status": status,
                    "to": self.endpoint.get("uri", ""),
                    "from": call.report.from_.lstrip("+"),
                    "headers": self.endpoint.get("headers", {}),
                },
            )
        elif call.call_over and self.completed_event:
            await self._event(
                call,
                call.public("/vonage/event"),
                {
                    **base,
                    "status": "completed",
                    "to": call.report.to.lstrip("+"),
                    "from": call.report.from_.lstrip("+"),
                    "direction": "inbound",
                },
            )

    def close(self) -> None:
        if self.api is not None:
            self.api.unregister("vonage", self.uuid)
