"""Call control against a fake Twilio REST API on loopback (PROTOCOLS.md §1.5).

The real ``twilio.rest.Client`` and its ``requests`` transport are used; only
the host is rewritten from api.twilio.com to a local ``http.server``.
"""

from __future__ import annotations

import pytest

from phonebridge.telephony.twilio.rest import BaseUrlHttpClient, TwilioApiError, TwilioCallControl

from .conftest import (
    ACCOUNT,
    GONE_CALL,
    LIVE_CALL,
    NUMBER_SID,
    TOKEN,
    FakeTwilio,
    LoopbackHttpClient,
)


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
    sid = await control.configure_number(
        "+14165550123",
        "https://bridge.example.com/twilio/voice",
        "https://bridge.example.com/twilio/call-status",
    )
    assert sid == NUMBER_SID
    (get, get_path, query), (post, post_path, form) = state.requests[-2:]
    assert (get, query["PhoneNumber"]) == ("GET", ["+14165550123"])
    assert get_path.endswith("/IncomingPhoneNumbers.json")
    assert post == "POST"
    assert post_path.endswith(f"/IncomingPhoneNumbers/{NUMBER_SID}.json")
    assert form == {
        "VoiceUrl": ["https://bridge.example.com/twilio/voice"],
        "VoiceMethod": ["POST"],
        "StatusCallback": ["https://bridge.example.com/twilio/call-status"],
        "StatusCallbackMethod": ["POST"],
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


async def test_cancel_of_a_gone_call_is_success(
    fake: tuple[FakeTwilio, LoopbackHttpClient],
) -> None:
    # The caller hung up and the human's call is already over: 20404 is not an error.
    state, http = fake
    control = TwilioCallControl(ACCOUNT, TOKEN, http_client=http)
    assert await control.cancel(GONE_CALL) is False
    assert state.requests[-1][2] == {"Status": ["canceled"]}
    assert await control.cancel(LIVE_CALL) is True


async def test_base_url_client_sends_requests_to_its_base(
    fake: tuple[FakeTwilio, LoopbackHttpClient],
) -> None:
    state, http = fake
    control = TwilioCallControl(ACCOUNT, TOKEN, http_client=BaseUrlHttpClient(http.base))
    assert await control.hang_up(LIVE_CALL) is True
    assert state.requests[-1][1] == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{LIVE_CALL}.json"
