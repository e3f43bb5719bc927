"""A fake Twilio REST API on loopback, shared by the REST and CLI tests.

The real ``twilio.rest.Client`` and its ``requests`` transport are used; only
the host is rewritten from api.twilio.com to a local ``http.server`` that
records what it was sent.
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

NUMBER = "+14165550123"
ACCOUNT = "AC0123456789abcdef0123456789abcdef"
TOKEN = "test-auth-token"
LIVE_CALL = "CA11111111111111111111111111111111"
GONE_CALL = "CA22222222222222222222222222222222"
NUMBER_SID = "PN33333333333333333333333333333333"


@dataclass
class FakeTwilio:
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)
    numbers: dict[str, str] = field(default_factory=lambda: {NUMBER: NUMBER_SID})

    @property
    def lookups(self) -> list[str]:
        """The phone numbers looked up, in order."""
        return [
            query.get("PhoneNumber", [""])[0]
            for method, path, query in self.requests
            if method == "GET" and path.endswith("/IncomingPhoneNumbers.json")
        ]

    @property
    def updates(self) -> list[tuple[str, dict[str, list[str]]]]:
        """(path, form) of every update to a phone number."""
        return [
            (path, form)
            for method, path, form in self.requests
            if method == "POST" and "/IncomingPhoneNumbers/" in path
        ]


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
