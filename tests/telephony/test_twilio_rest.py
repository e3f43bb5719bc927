"""Call control against a fake Twilio REST API on loopback (PROTOCOLS.md §1.5).

The real ``twilio.rest.Client`` and its ``requests`` transport are used; only
the host is rewritten from api.twilio.com to a local ``http.server``.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response

from phonebridge.telephony.twilio.rest import TwilioApiError, TwilioCallControl

ACCOUNT = "AC0123456789abcdef0123456789abcdef"
TOKEN = "test-auth-token"
LIVE_CALL = "CA11111111111111111111111111111111"
GONE_CALL = "CA22222222222222222222222222222222"
NUMBER_SID = "PN33333333333333333333333333333333"


@dataclass
class FakeTwilio:
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)
    numbers: dict[str, str] = field(default_factory=lambda: {"+14165550123": NUMBER_SID})


def make_handler(state: FakeTwilio) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            expected = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                self._reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
                return False
            return True

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            state.requests.append(("GET", url.path, query))
            if not self._authorised():
                return
            if url.path == f"/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers.json":
                number = query.get("PhoneNumber", [""])[0]
                found = (
                    [{"sid": state.numbers[number], "phone_number": number, "account_sid": ACCOUNT}]
                    if number in state.numbers
                    else []
                )
                self._reply(200, {"incoming_phone_numbers": found, "next_page_uri": None})
            else:
                self._reply(404, {"code": 20404, "message": "not found", "status": 404})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            path = urlsplit(self.path).path
            state.requests.append(("POST", path, form))
            if not self._authorised():
                return
            base = f"/2010-04-01/Accounts/{ACCOUNT}"
            if path == f"{base}/Calls/{LIVE_CALL}.json":
                self._reply(200, {"sid": LIVE_CALL, "status": "completed"})
            elif path == f"{base}/IncomingPhoneNumbers/{NUMBER_SID}.json":
                self._reply(200, {"sid": NUMBER_SID, "voice_url": form["VoiceUrl"][0]})
            elif path == f"{base}/Calls/CA500.json":
                self._reply(500, {"code": 20500, "message": "internal", "status": 500})
            else:
                self._reply(404, {"code": 20404, "message": "not found", "status": 404})

    return Handler


class LoopbackHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """The package's own transport, pointed at the fake API instead of api.twilio.com."""

    def __init__(self, base: str) -> None:
        super().__init__(timeout=5)
        self.base = base

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        assert url.startswith("https://api.twilio.com/")
        return super().request(
            method, self.base + url[len("https://api.twilio.com") :], *args, **kwargs
        )


@pytest.fixture
def fake() -> Iterator[tuple[FakeTwilio, LoopbackHttpClient]]:
    state = FakeTwilio()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    http = LoopbackHttpClient(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield state, http
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        assert http.session is not None
        http.session.close()


async def test_hang_up_live_call(fake: tuple[FakeTwilio, LoopbackHttpClient]) -> None:
    state, http = fake
    control = TwilioCallControl(ACCOUNT, TOKEN, http_client=http)
    assert await control.hang_up(LIVE_CALL) is True
    method, path, form = state.requests[-1]
    assert (method, path) == ("POST", f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{LIVE_CALL}.json")
    assert form == {"Status": ["completed"]}


async def test_hang_up_gone_call_is_success(fake: tuple[FakeTwilio, LoopbackHttpClient]) -> None:
    _, http = fake
    control = TwilioCallControl(ACCOUNT, TOKEN, http_client=http)
    assert await control.hang_up(GONE_CALL) is False


async def test_server_error_raises_with_code(fake: tuple[FakeTwilio, LoopbackHttpClient]) -> None:
    _, http = fake
    control = TwilioCallControl(ACCOUNT, TOKEN, http_client=http)
    with pytest.raises(TwilioApiError) as info:
        await control.hang_up("CA500")
    assert (info.value.status, info.value.code) == (500, 20500)


async def test_wrong_token_raises(fake: tuple[FakeTwilio, LoopbackHttpClient]) -> None:
    _, http = fake
    control = TwilioCallControl(ACCOUNT, "wrong", http_client=http)
    with pytest.raises(TwilioApiError) as info:
        await control.hang_up(LIVE_CALL)
    assert info.value.code == 20003


async def test_redirect_sends_twiml(fake: tuple[FakeTwilio, LoopbackHttpClient]) -> None:
    state, http = fake
    control = TwilioCallControl(ACCOUNT, TOKEN, http_client=http)
    twiml = "<Response><Dial>+14165550199</Dial></Response>"
    await control.redirect(LIVE_CALL, twiml)
    assert state.requests[-1][2] == {"Twiml": [twiml]}


async def test_configure_number(fake: tuple[FakeTwilio, LoopbackHttpClient]) -> None:
    state, http = fake
    control = TwilioCallControl(ACCOUNT, TOKEN, http_client=http)
    sid = await control.configure_number("+14165550123", "https://bridge.example.com/twilio/voice")
    assert sid == NUMBER_SID
    (get, get_path, query), (post, post_path, form) = state.requests[-2:]
    assert (get, query["PhoneNumber"]) == ("GET", ["+14165550123"])
    assert get_path.endswith("/IncomingPhoneNumbers.json")
    assert post == "POST"
    assert post_path.endswith(f"/IncomingPhoneNumbers/{NUMBER_SID}.json")
    assert form == {
        "VoiceUrl": ["https://bridge.example.com/twilio/voice"],
        "VoiceMethod": ["POST"],
    }


async def test_configure_unknown_number(fake: tuple[FakeTwilio, LoopbackHttpClient]) -> None:
    _, http = fake
    control = TwilioCallControl(ACCOUNT, TOKEN, http_client=http)
    with pytest.raises(TwilioApiError, match="not a phone number of this account"):
        await control.configure_number("+14165550999", "https://bridge.example.com/twilio/voice")


async def test_unreachable_api_raises(fake: tuple[FakeTwilio, LoopbackHttpClient]) -> None:
    _, http = fake
    http.base = "http://127.0.0.1:1"
    control = TwilioCallControl(ACCOUNT, TOKEN, http_client=http)
    with pytest.raises(TwilioApiError, match="request failed"):
        await control.hang_up(LIVE_CALL)
