"""``phonebridge dial``: argument parsing, the token rule, and one real run."""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest

from phonebridge.simulators.phone import DEV_AUTH_TOKEN, cli
from phonebridge.telephony.twilio import twiml
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, validate_webhook


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["dial", *argv])


def test_options_are_parsed() -> None:
    args = parse(
        "http://127.0.0.1:1",
        "--to",
        "+14165550123",
        "--gap",
        "1.5:2",
        "--gap",
        "4:0.5",
        "--dtmf",
        "3:12#",
        "--hangup-after",
        "9",
        "--fast",
        "--no-stop",
    )
    assert args.gap == [(1.5, 2.0), (4.0, 0.5)]
    assert args.dtmf == [(3.0, "12#")]
    assert (args.hangup_after, args.fast, args.no_stop, args.from_) == (
        9.0,
        True,
        True,
        "+15005550006",
    )
    assert args.func is cli.run


@pytest.mark.parametrize(("flag", "value"), [("--gap", "12"), ("--gap", "a:b"), ("--dtmf", "1:x")])
def test_bad_options_are_refused(flag: str, value: str) -> None:
    with pytest.raises(SystemExit):
        parse("http://127.0.0.1:1", "--to", "+1", flag, value)


def test_missing_token_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    assert cli.run(parse("http://127.0.0.1:1", "--to", "+14165550123")) == 2
    assert "TWILIO_AUTH_TOKEN" in capsys.readouterr().err


@pytest.fixture
def busy_bridge() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            form = dict(parse_qsl(body))
            url = f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"  # type: ignore[index]
            if validate_webhook(DEV_AUTH_TOKEN, url, form, self.headers.get(SIGNATURE_HEADER)):
                status, answer = 200, twiml.say_and_hangup("We are busy.").encode()
            else:
                status, answer = 403, b"forbidden"
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_dev_token_run_prints_the_report(
    busy_bridge: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    code = cli.run(parse(busy_bridge, "--to", "+14165550123", "--dev-token"))
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["ended_by"] == "twiml"
    assert report["said"] == ["We are busy."]


def test_wrong_env_token_fails_with_exit_1(
    busy_bridge: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "not-the-dev-token")
    code = cli.run(parse(busy_bridge, "--to", "+14165550123", "--dev-token"))
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["webhook_status"] == 403
