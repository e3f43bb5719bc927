"""``phonebridge telnyx|plivo|vonage|signalwire configure`` against the fake carrier REST API.

The real argument parser, settings and httpx requests; the carriers' APIs are
the loopback :class:`FakeCarrierApi` (a TEST DOUBLE), pointed at by the same
``*_API_URL`` / ``SIGNALWIRE_SPACE_URL`` settings the bridge uses.
"""

from __future__ import annotations

import argparse
import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from phonebridge.simulators.phone.carriers.rest import ApiCredentials, FakeCarrierApi
from phonebridge.telephony import carrier_configure
from phonebridge.telephony.telnyx.signature import public_key_text

PUBLIC = "https://bridge.example.com"
CREDENTIALS = ApiCredentials(
    telnyx_api_key="KEYtelnyx",
    plivo_auth_id="MAPLIVO01",
    plivo_auth_token="plivo-token",
    signalwire_project_id="PJproject",
    signalwire_api_token="PTapitoken",
    vonage_api_key="abcd1234",
    vonage_api_secret="vonage-api-secret",
)
NUMBER = "+14165550123"


def environ(api: FakeCarrierApi, carrier: str, **overrides: str) -> dict[str, str]:
    env = {
        "telnyx": {
            "TELNYX_PUBLIC_KEY": public_key_text(Ed25519PrivateKey.generate()),
            "TELNYX_API_KEY": CREDENTIALS.telnyx_api_key,
            "TELNYX_API_URL": api.url,
        },
        "plivo": {
            "PLIVO_AUTH_ID": CREDENTIALS.plivo_auth_id,
            "PLIVO_AUTH_TOKEN": CREDENTIALS.plivo_auth_token,
            "PLIVO_API_URL": api.url,
        },
        "vonage": {
            "VONAGE_SIGNATURE_SECRET": "vonage-signature-secret-0123456789abcdef",
            "VONAGE_API_KEY": CREDENTIALS.vonage_api_key,
            "VONAGE_API_SECRET": CREDENTIALS.vonage_api_secret,
            "VONAGE_API_URL": api.url,
        },
        "signalwire": {
            "SIGNALWIRE_SIGNING_KEY": "PSKsigning",
            "SIGNALWIRE_PROJECT_ID": CREDENTIALS.signalwire_project_id,
            "SIGNALWIRE_API_TOKEN": CREDENTIALS.signalwire_api_token,
            "SIGNALWIRE_SPACE_URL": api.url,
        },
    }[carrier]
    return {"PHONEBRIDGE_PUBLIC_URL": PUBLIC, **env, **overrides}


async def run_cli(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """The real sub-command, in a thread (it runs its own event loop, as from a shell)."""
    parser = argparse.ArgumentParser(prog="phonebridge")
    subparsers = parser.add_subparsers(dest="command", required=True)
    carrier_configure.register(subparsers, environ=env)
    args = parser.parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    code: int = await asyncio.to_thread(args.func, args, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
async def api() -> AsyncIterator[FakeCarrierApi]:
    async with FakeCarrierApi(CREDENTIALS) as running:
        running.resources[("telnyx", "1293384261075731499")] = {
            "id": "1293384261075731499",
            "application_name": "call-router",
            "webhook_event_url": "https://old.example.com/hooks",
        }
        running.resources[("plivo", "20372631212782780")] = {
            "app_id": "20372631212782780",
            "answer_url": "https://old.example.com/answer",
        }
        running.resources[("vonage", "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee")] = {
            "id": "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
            "name": "My voice app",
            "capabilities": {
                "voice": {"webhooks": {"fallback_answer_url": {"address": "https://f.example"}}},
                "messages": {"webhooks": {"inbound_url": {"address": "https://m.example"}}},
            },
            "keys": {"public_key": "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----"},
        }
        running.resources[("signalwire", "PN0001")] = {
            "sid": "PN0001",
            "phone_number": NUMBER,
            "voice_url": "https://old.example.com/voice",
        }
        yield running


async def test_telnyx_sets_the_call_control_applications_webhook(api: FakeCarrierApi) -> None:
    argv = ["telnyx", "configure", "--application-id", "1293384261075731499"]
    code, out, err = await run_cli(argv, environ(api, "telnyx"))
    assert (code, err) == (0, "")
    app = api.resources[("telnyx", "1293384261075731499")]
    assert app["webhook_event_url"] == f"{PUBLIC}/telnyx/voice"
    assert app["application_name"] == "call-router"  # read first, sent back (Telnyx needs it)
    assert f"POST {PUBLIC}/telnyx/voice" in out
    assert [(r.method, r.authorized) for r in api.requests] == [("GET", True), ("PATCH", True)]


async def test_plivo_sets_the_applications_answer_url(api: FakeCarrierApi) -> None:
    argv = ["plivo", "configure", "--app-id", "20372631212782780"]
    code, out, _ = await run_cli(argv, environ(api, "plivo"))
    assert code == 0
    app = api.resources[("plivo", "20372631212782780")]
    assert (app["answer_url"], app["answer_method"]) == (f"{PUBLIC}/plivo/voice", "POST")
    assert "20372631212782780" in out


async def test_vonage_sets_answer_and_event_urls_and_keeps_the_rest(api: FakeCarrierApi) -> None:
    code, out, _ = await run_cli(
        [
            "vonage",
            "configure",
            "--application-id",
            "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
            "--public-url",
            "https://x.ngrok.app/pb",
        ],
        environ(api, "vonage"),
    )
    assert code == 0
    app = api.resources[("vonage", "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee")]
    voice: dict[str, Any] = app["capabilities"]["voice"]
    assert voice["webhooks"]["answer_url"] == {
        "address": "https://x.ngrok.app/pb/vonage/answer",
        "http_method": "GET",
    }
    assert voice["webhooks"]["event_url"] == {
        "address": "https://x.ngrok.app/pb/vonage/event",
        "http_method": "POST",
    }
    assert voice["signed_callbacks"] is True
    # A PUT replaces the application: what we did not change was sent back.
    assert app["name"] == "My voice app"
    assert voice["webhooks"]["fallback_answer_url"] == {"address": "https://f.example"}
    assert app["capabilities"]["messages"]["webhooks"]["inbound_url"]["address"]
    assert app["keys"]["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    assert "GET https://x.ngrok.app/pb/vonage/answer" in out


async def test_signalwire_finds_the_number_and_sets_its_voice_url(api: FakeCarrierApi) -> None:
    code, out, _ = await run_cli(
        ["signalwire", "configure", "--number", NUMBER], environ(api, "signalwire")
    )
    assert code == 0
    number = api.resources[("signalwire", "PN0001")]
    assert (number["voice_url"], number["voice_method"]) == (f"{PUBLIC}/signalwire/voice", "POST")
    assert "PN0001" in out


@pytest.mark.parametrize(
    ("carrier", "argv", "overrides"),
    [
        ("telnyx", ["--application-id", "1293384261075731499"], {"TELNYX_API_KEY": "wrong-key"}),
        ("plivo", ["--app-id", "20372631212782780"], {"PLIVO_AUTH_TOKEN": "wrong-key"}),
        ("vonage", ["--application-id", "x"], {"VONAGE_API_SECRET": "wrong-key"}),
        ("signalwire", ["--number", NUMBER], {"SIGNALWIRE_API_TOKEN": "wrong-key"}),
    ],
)
async def test_a_wrong_credential_is_reported_not_echoed_and_changes_nothing(
    api: FakeCarrierApi, carrier: str, argv: list[str], overrides: dict[str, str]
) -> None:
    before = {key: dict(value) for key, value in api.resources.items()}
    code, out, err = await run_cli(
        [carrier, "configure", *argv], environ(api, carrier, **overrides)
    )
    assert code == 1
    assert "401" in err
    assert "wrong-key" not in err
    assert out == ""
    assert api.resources == before


@pytest.mark.parametrize(
    ("carrier", "argv"),
    [
        ("telnyx", ["--application-id", "999"]),
        ("plivo", ["--app-id", "999"]),
        ("vonage", ["--application-id", "999"]),
        ("signalwire", ["--number", "+14165550999"]),
    ],
)
async def test_an_unknown_application_or_number_fails_with_status_1(
    api: FakeCarrierApi, carrier: str, argv: list[str]
) -> None:
    code, _, err = await run_cli([carrier, "configure", *argv], environ(api, carrier))
    assert code == 1
    assert "not found" in err or "not a number of project" in err


async def test_missing_settings_are_one_line_each_with_status_2(api: FakeCarrierApi) -> None:
    env = environ(api, "vonage")
    del env["VONAGE_API_SECRET"]
    code, _, err = await run_cli(["vonage", "configure"], env)
    assert code == 2
    assert "VONAGE_API_SECRET is not set" in err
    assert "--application-id or VONAGE_APPLICATION_ID is not set" in err
    assert api.requests == []


async def test_a_number_that_is_not_e164_is_refused_before_any_request(
    api: FakeCarrierApi,
) -> None:
    argv = ["signalwire", "configure", "--number", "(416) 555-0123"]
    code, _, err = await run_cli(argv, environ(api, "signalwire"))
    assert code == 2
    assert "E.164" in err
    assert api.requests == []
