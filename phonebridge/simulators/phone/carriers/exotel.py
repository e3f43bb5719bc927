"""Exotel's Voicebot applet (AgentStream), simulated — a TEST DOUBLE (CARRIERS.md §5).

Set-up: the applet is configured with an https endpoint; Exotel GETs it with
the call's ``CallSid``, ``CallFrom``, ``CallTo`` (also ``From``/``To``),
``Direction`` and ``CustomField``, and opens the ``wss://`` URL the endpoint
answers (``{"url": …}``). Exotel signs nothing: the endpoint and the socket are
protected by **Basic auth written into the URL** (``https://KEY:TOKEN@…``,
sent as ``Authorization: Basic``) or an IP allow-list (loopback here).
``?sample-rate=8000|16000|24000`` picks the rate; up to 3 other query pairs
come back in ``start.custom_parameters``.

On the socket — **every scalar a string**, snake_case (``camel=True`` for the
camelCase spelling Exotel's own samples use): ``connected``, ``start``,
``media`` every **100 ms** of PCM16 LE, ``dtmf``, ``mark`` echoes (pending
marks echoed on ``clear``), ``stop`` with ``reason`` ``callended``. App
``media`` chunks that break Exotel's rules (a multiple of 320 B, at least
3 200 B, at most 100 KB) are played but recorded as **gaps** in ``notes``
(the platform stalls 20 ms after a short chunk rather than refusing it);
anything malformed closes the socket. When the bot closes the socket the
applet ends and the flow moves to the next applet (recorded as
``ended_by="bridge"``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, ClassVar, Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

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
    app_base64,
    app_json,
    app_mark_name,
    forged,
    token,
)
from phonebridge.telephony.exotel.auth import basic_header

ALIGN: Final = 320
MIN_CHUNK: Final = 3_200
MAX_CHUNK: Final = 102_400
MAX_CUSTOM: Final = 3


class ExotelWire(CarrierWire):
    carrier: ClassVar[str] = "exotel"
    frame_ms: ClassVar[int] = 100

    def __init__(
        self, *, rate: int, call_sid: str, account_sid: str, from_: str, to: str, camel: bool
    ) -> None:
        super().__init__(rate)
        self.stream_sid = token()
        self.call_sid = call_sid
        self.account_sid = account_sid
        self.from_ = from_
        self.to = to
        self.camel = camel

    def _k(self, snake: str) -> str:
        if not self.camel:
            return snake
        head, *rest = snake.split("_")
        return head + "".join(word.title() for word in rest)

    def _envelope(self, event: str, **body: Any) -> str:
        return json.dumps(
            {
                "event": event,
                self._k("sequence_number"): str(self.next_sequence()),
                self._k("stream_sid"): self.stream_sid,
                **body,
            }
        )

    def opening(self, parameters: Mapping[str, str]) -> list[Frame]:
        start = {
            self._k("stream_sid"): self.stream_sid,
            self._k("call_sid"): self.call_sid,
            self._k("account_sid"): self.account_sid,
            "from": self.from_,
            "to": self.to,
            self._k("custom_parameters"): dict(parameters),
            self._k("media_format"): {
                "encoding": "audio/x-raw",
                self._k("sample_rate"): str(self.rate),
                self._k("bit_rate"): "16",
            },
        }
        return [json.dumps({"event": "connected"}), self._envelope("start", start=start)]

    def media(self, pcm16: bytes, timestamp_ms: int) -> Frame:
        media = {
            "chunk": str(self.next_chunk()),
            "timestamp": str(timestamp_ms),
            "payload": base64.b64encode(pcm16).decode(),
        }
        return self._envelope("media", media=media)

    def dtmf(self, digit: str) -> Frame:
        return self._envelope("dtmf", dtmf={"digit": digit, "duration": "260"})

    def mark_played(self, name: str) -> Frame:
        return self._envelope("mark", mark={"name": name})

    def stop(self) -> Frame:
        stop = {
            self._k("call_sid"): self.call_sid,
            self._k("account_sid"): self.account_sid,
            "reason": "callended",
        }
        return self._envelope("stop", stop=stop)

    def judge(self, raw: Frame) -> AppMessage:
        doc = app_json(raw, "Exotel")
        sid = doc.get("stream_sid", doc.get("streamSid"))
        if sid != self.stream_sid:
            raise CarrierRejected(NO_CODE, f"stream_sid {sid!r:.60} is not this stream")
        match doc.get("event"):
            case "media":
                return self._media(doc.get("media"))
            case "mark":
                return AppMark(app_mark_name(doc.get("mark"), "mark.name"))
            case "clear":
                return AppClear()
            case other:
                raise CarrierRejected(NO_CODE, f"unknown event {other!r:.40}")

    def _media(self, media: object) -> AppMessage:
        payload = media.get("payload") if isinstance(media, dict) else None
        data = app_base64(payload, "media.payload")
        if len(data) % 2 or len(data) > MAX_CHUNK:
            raise CarrierRejected(NO_CODE, f"media chunk of {len(data)} bytes")
        if len(data) % ALIGN:
            self.notes.append(f"gap: chunk of {len(data)} B is not a multiple of {ALIGN} B")
        elif len(data) < MIN_CHUNK:
            self.notes.append(f"gap: chunk of {len(data)} B is under {MIN_CHUNK} B")
        return AppAudio(data)


def read_stream_url(url: str) -> tuple[str, str, str, int, dict[str, str]]:
    """``(url without userinfo, user, password, rate, custom parameters)``; ``ValueError``."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"stream URL {url!r} is not ws(s)://")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    rate_text = query.pop("sample-rate", "8000")
    if rate_text not in ("8000", "16000", "24000"):
        raise ValueError(f"sample-rate={rate_text!r}")
    if len(query) > MAX_CUSTOM or len(urlencode(query)) > 256:
        raise ValueError("more than 3 custom parameters or 256 characters")
    netloc = parts.netloc.rpartition("@")[2]
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return (
        bare,
        unquote(parts.username or ""),
        unquote(parts.password or ""),
        int(rate_text),
        query,
    )


class ExotelFlavour(CarrierFlavour):
    carrier: ClassVar[str] = "exotel"

    def __init__(self, basic_user: str, basic_password: str, *, camel: bool = False) -> None:
        self.user = basic_user
        self.password = basic_password
        self.camel = camel
        self.call_sid = token()

    def auth(self, mode: str, user: str, password: str) -> dict[str, str]:
        if mode == "missing" or not user:
            return {}
        secret = password if mode == "valid" else forged(password)
        return {"Authorization": basic_header(user, secret)}

    async def set_up(self, call: CarrierCall) -> StreamPlan | None:
        r = call.report
        r.call_sid = self.call_sid
        r.account_sid = "exotel" + token()[:8]
        query = {
            "CallSid": self.call_sid,
            "CallFrom": r.from_,
            "CallTo": r.to,
            "From": r.from_,
            "To": r.to,
            "Direction": "incoming",
            "CustomField": "",
        }
        url = call.public("/exotel/voice") + "?" + urlencode(query)
        headers = self.auth(call.webhook_auth, self.user, self.password)
        response = await call.webhook("GET", url, headers=headers)
        if response is None:
            return None
        try:
            doc = json.loads(response.text)
            stream_url = doc["url"] if isinstance(doc, dict) else None
            if not isinstance(stream_url, str):
                raise ValueError("no 'url' string in the answer")
            bare, user, password, rate, custom = read_stream_url(stream_url)
        except (ValueError, KeyError) as exc:
            call.error(NO_CODE, f"applet endpoint answer: {exc}")
            call.ended("stream_failed")
            return None
        wire = ExotelWire(
            rate=rate,
            call_sid=self.call_sid,
            account_sid=r.account_sid,
            from_=r.from_,
            to=r.to,
            camel=self.camel,
        )
        r.stream_sid = wire.stream_sid
        headers = self.auth(call.socket_auth, user, password)
        return StreamPlan(bare, call.routes.websocket(bare), headers, wire, custom)


class ExotelConnectFlavour(CarrierFlavour):
    """An outbound Connect Voice AI call (``Calls/connect`` with a ``StreamUrl``): no
    applet endpoint, Exotel opens the ``StreamUrl`` the API was given as soon as
    the callee answers (its userinfo sent as ``Authorization: Basic``)."""

    carrier: ClassVar[str] = "exotel"

    def __init__(
        self, stream_url: str, *, call_sid: str, account_sid: str, camel: bool = False
    ) -> None:
        self.stream_url = stream_url
        self.call_sid = call_sid
        self.account_sid = account_sid
        self.camel = camel

    async def set_up(self, call: CarrierCall) -> StreamPlan | None:
        r = call.report
        r.call_sid = self.call_sid
        r.account_sid = self.account_sid
        try:
            bare, user, password, rate, custom = read_stream_url(self.stream_url)
        except ValueError as exc:
            call.error(NO_CODE, f"StreamUrl: {exc}")
            call.ended("stream_failed")
            return None
        wire = ExotelWire(
            rate=rate,
            call_sid=self.call_sid,
            account_sid=self.account_sid,
            # Exotel's From is the number dialled first (the callee), To our ExoPhone.
            from_=r.to,
            to=r.from_,
            camel=self.camel,
        )
        r.stream_sid = wire.stream_sid
        headers = {"Authorization": basic_header(user, password)} if user else {}
        return StreamPlan(bare, call.routes.websocket(bare), headers, wire, custom)
