"""``phonebridge twilio configure`` against a fake Twilio REST API on loopback.

The real argument parser, settings, ``twilio.rest.Client`` and ``requests``
transport are used; only the host is rewritten from api.twilio.com to a local
``http.server`` that records what it was sent.
"""

from __future__ import annotations

import argparse
import io

import pytest

from phonebridge.telephony.twilio import configure_cli

from .conftest import ACCOUNT, NUMBER, NUMBER_SID, TOKEN, FakeTwilio, LoopbackHttpClient

BASE_ENV = {
    "TWILIO_ACCOUNT_SID": ACCOUNT,
    "TWILIO_AUTH_TOKEN": TOKEN,
    "PHONEBRIDGE_PUBLIC_URL": "https://bridge.example.com/",
}


def run_cli(
    argv: list[str], environ: dict[str, str], http: LoopbackHttpClient | None
) -> tuple[int, str, str]:
    """Parse ``argv`` with the real sub-command and run it, capturing its output."""
    parser = argparse.ArgumentParser(prog="phonebridge")
    subparsers = parser.add_subparsers(dest="command", required=True)
    configure_cli.register(subparsers, environ=environ, http_client=http)
    args = parser.parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    code: int = args.func(args, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_sets_voice_url_from_public_url(fake: tuple[FakeTwilio, LoopbackHttpClient]) -> None:
    state, http = fake
    code, out, err = run_cli(["twilio", "configure", "--number", NUMBER], BASE_ENV, http)
    assert (code, err) == (0, "")
    assert state.lookups == [NUMBER]
    assert state.updates == [
        (
            f"/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers/{NUMBER_SID}.json",
            {
                "VoiceUrl": ["https://bridge.example.com/twilio/voice"],
                "VoiceMethod": ["POST"],
                # A caller who hangs up while it rings frees the model socket at once.
                "StatusCallback": ["https://bridge.example.com/twilio/call-status"],
                "StatusCallbackMethod": ["POST"],
            },
        )
    ]
    assert NUMBER_SID in out
    assert "https://bridge.example.com/twilio/voice" in out
    assert TOKEN not in out


def test_public_url_flag_wins_and_keeps_its_prefix(
    fake: tuple[FakeTwilio, LoopbackHttpClient],
) -> None:
    state, http = fake
    argv = ["twilio", "configure", "--number", NUMBER, "--public-url", "https://x.ngrok.app/pb"]
    code, _, _ = run_cli(argv, BASE_ENV, http)
    assert code == 0
    assert state.updates[0][1]["VoiceUrl"] == ["https://x.ngrok.app/pb/twilio/voice"]


def test_unknown_number_fails_without_update(fake: tuple[FakeTwilio, LoopbackHttpClient]) -> None:
    state, http = fake
    code, out, err = run_cli(["twilio", "configure", "--number", "+14165550999"], BASE_ENV, http)
    assert code == 1
    assert "not a phone number of this account" in err
    assert out == ""
    assert state.updates == []


def test_wrong_token_is_reported_not_echoed(fake: tuple[FakeTwilio, LoopbackHttpClient]) -> None:
    state, http = fake
    environ = BASE_ENV | {"TWILIO_AUTH_TOKEN": "wrong-token-value"}
    code, _, err = run_cli(["twilio", "configure", "--number", NUMBER], environ, http)
    assert code == 1
    assert "401" in err
    assert "wrong-token-value" not in err
    assert state.updates == []


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ("TWILIO_ACCOUNT_SID", "TWILIO_ACCOUNT_SID"),
        ("TWILIO_AUTH_TOKEN", "TWILIO_AUTH_TOKEN"),
        ("PHONEBRIDGE_PUBLIC_URL", "PHONEBRIDGE_PUBLIC_URL"),
    ],
)
def test_missing_setting_is_named(missing: str, named: str) -> None:
    environ = {name: value for name, value in BASE_ENV.items() if name != missing}
    # No http client: the command must stop before any request is attempted.
    code, out, err = run_cli(["twilio", "configure", "--number", NUMBER], environ, None)
    assert code == 2
    assert named in err
    assert out == ""


def test_account_sid_needed_even_when_signatures_are_skipped() -> None:
    environ = {
        "PHONEBRIDGE_PUBLIC_URL": "https://bridge.example.com",
        "PHONEBRIDGE_INSECURE_SKIP_TWILIO_SIGNATURE": "1",
    }
    code, _, err = run_cli(["twilio", "configure", "--number", NUMBER], environ, None)
    assert code == 2
    assert "TWILIO_ACCOUNT_SID" in err
    assert "TWILIO_AUTH_TOKEN" in err


@pytest.mark.parametrize("number", ["4165550123", "+0123", "(416) 555-0123", "+1 416 555 0123"])
def test_rejects_non_e164_numbers(number: str) -> None:
    code, _, err = run_cli(["twilio", "configure", "--number", number], BASE_ENV, None)
    assert code == 2
    assert "E.164" in err


def test_http_public_url_is_refused_before_calling_twilio() -> None:
    argv = ["twilio", "configure", "--number", NUMBER, "--public-url", "http://bridge.example.com"]
    code, _, err = run_cli(argv, BASE_ENV, None)
    assert code == 2
    assert "https" in err


def test_configure_requires_number() -> None:
    parser = argparse.ArgumentParser(prog="phonebridge")
    configure_cli.register(parser.add_subparsers(dest="command", required=True))
    with pytest.raises(SystemExit):
        parser.parse_args(["twilio", "configure"])


@pytest.mark.parametrize(
    ("extra", "status_path"),
    [
        # One named replica without Redis: only it holds its pending calls.
        ({"PHONEBRIDGE_REPLICA_ID": "edge-1"}, "/twilio/r/edge-1/call-status"),
        # A cluster: any replica takes the status callback and tells the one
        # holding the call (coordination/ RingingHangups), so no replica is named.
        (
            {"PHONEBRIDGE_REPLICA_ID": "edge-1", "PHONEBRIDGE_REDIS_URL": "redis://redis:6379/0"},
            "/twilio/call-status",
        ),
    ],
)
def test_status_callback_names_a_replica_only_without_shared_coordination(
    fake: tuple[FakeTwilio, LoopbackHttpClient], extra: dict[str, str], status_path: str
) -> None:
    state, http = fake
    code, out, err = run_cli(["twilio", "configure", "--number", NUMBER], BASE_ENV | extra, http)
    assert (code, err) == (0, "")
    status_url = "https://bridge.example.com" + status_path
    assert state.updates[0][1]["StatusCallback"] == [status_url]
    assert status_url in out
