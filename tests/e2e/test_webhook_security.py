"""Webhook and media-socket security behind a TLS-terminating proxy (PROTOCOLS.md §1.4).

tests/e2e/test_call_path.py already covers a forged, a missing and a
parameter-changed voice-webhook signature, and an unsigned / forged media
upgrade and a guessed token on an idle bridge. This file adds the public-URL
rule (the signature is over ``PHONEBRIDGE_PUBLIC_URL`` + path + query, never
over the ``Host`` or ``X-Forwarded-*`` headers a client controls), query
strings, the ``<Connect action>`` webhook, a verbatim replay, and the media
socket while a real call is pending: a refused or reused stream opens no
second model session.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from phonebridge.local import DEMO_AUTH_TOKEN, LocalBridge
from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.phone.twiml_reader import TwimlAnswer, read_twiml
from phonebridge.simulators.phone.wire import TwilioStreamWriter
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign

from .conftest import BridgeFactory, record_of, tone_mulaw
from .leaks import assert_no_leaks, baseline, bridge_of

SHAKSHUKA = "+14165550102"  # self-hosted only: one model server, no overflow
PUBLIC_HOST = "bridge.phonebridge.invalid"


def voice_form(call_sid: str | None = None) -> dict[str, str]:
    return {
        "CallSid": call_sid or "CA" + secrets.token_hex(16),
        "AccountSid": "AC" + "1" * 32,
        "From": "+15005550006",
        "To": SHAKSHUKA,
        "CallStatus": "ringing",
    }


async def post(
    bridge: LocalBridge,
    path: str,
    form: Mapping[str, str],
    *,
    signed_url: str | None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """POST ``form`` to the bridge's ``path``, signed for ``signed_url`` (None: unsigned)."""
    sent = dict(headers or {})
    if signed_url is not None:
        sent[SIGNATURE_HEADER] = sign(DEMO_AUTH_TOKEN, signed_url, form)
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(bridge.url + path, data=form, headers=sent)


def model_connections(bridge: LocalBridge) -> int:
    return sum(len(sim.connections) for sim in (*bridge.self_hosted, bridge.polargrid, bridge.fal))


async def wait_for_model_connections(bridge: LocalBridge, count: int) -> None:
    """The webhook opens the model session in the background: wait for it to connect."""
    async with asyncio.timeout(10):
        await bridge.self_hosted[0].wait_for_connections(count)


def twiml_of(response: httpx.Response) -> TwimlAnswer:
    assert response.status_code == 200, response.text
    return read_twiml(response.text, response.headers.get("content-type"))


# -- the public-URL rule ------------------------------------------------------------------


async def test_signed_for_the_public_url_is_accepted_whatever_host_headers_say(
    start_bridge: BridgeFactory,
) -> None:
    async with start_bridge(pending_timeout=0.5) as bridge:
        before = baseline(bridge)
        form = voice_form()
        response = await post(
            bridge,
            "/twilio/voice",
            form,
            signed_url=bridge.public_url + "/twilio/voice",
            # What a proxy (or an attacker) may put there: none of it is used.
            headers={
                "Host": "evil.example",
                "X-Forwarded-Host": "evil.example",
                "X-Forwarded-Proto": "http",
                "X-Forwarded-Port": "8443",
                "Forwarded": "host=evil.example;proto=http",
            },
        )
        answer = twiml_of(response)
        assert answer.connects_stream
        # The stream URL in the TwiML is built from the public URL, not the Host header.
        assert answer.stream_url == f"wss://{PUBLIC_HOST}/twilio/media"
        await wait_for_model_connections(bridge, 1)
        assert model_connections(bridge) == 1
        record = await record_of(bridge, form["CallSid"])  # no stream: the deadline closes it
        assert record.end_reason == "no_stream"
        await assert_no_leaks(bridge, before)


@pytest.mark.parametrize(
    ("signed_for", "headers"),
    [
        # What the bridge itself sees behind the proxy: http, its own host and port.
        ("{internal}/twilio/voice", {}),
        ("{internal}/twilio/voice", {"X-Forwarded-Proto": "http"}),
        # An attacker's own host, announced in the headers it controls.
        (
            "https://evil.example/twilio/voice",
            {"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
        ),
        # The public host over plain http (the scheme is part of what Twilio signs).
        (f"http://{PUBLIC_HOST}/twilio/voice", {"X-Forwarded-Proto": "http"}),
    ],
    ids=["internal-url", "internal-url-forwarded-proto", "attacker-host", "public-host-http"],
)
async def test_signed_for_any_other_url_is_rejected(
    bridge: LocalBridge, signed_for: str, headers: dict[str, str]
) -> None:
    url = signed_for.format(internal=bridge.url)
    response = await post(bridge, "/twilio/voice", voice_form(), signed_url=url, headers=headers)
    assert response.status_code == 403
    assert model_connections(bridge) == 0
    assert len(bridge_of(bridge).pending) == 0


async def test_a_query_string_is_part_of_the_signed_url(start_bridge: BridgeFactory) -> None:
    async with start_bridge(pending_timeout=0.5) as bridge:
        before = baseline(bridge)
        path = "/twilio/voice?source=pstn&x=1%202"
        public = bridge.public_url + path
        without_query = bridge.public_url + "/twilio/voice"
        # Signed without the query, sent with it; signed with it, sent without.
        assert (await post(bridge, path, voice_form(), signed_url=without_query)).status_code == 403
        assert (
            await post(bridge, "/twilio/voice", voice_form(), signed_url=public)
        ).status_code == (403)
        # Signed with the query as Twilio requested it: accepted.
        form = voice_form()
        assert twiml_of(await post(bridge, path, form, signed_url=public)).connects_stream
        await wait_for_model_connections(bridge, 1)
        assert model_connections(bridge) == 1
        assert (await record_of(bridge, form["CallSid"])).end_reason == "no_stream"
        await assert_no_leaks(bridge, before)


# -- the <Connect action> webhook ---------------------------------------------------------


async def test_a_forged_stream_ended_webhook_changes_nothing(start_bridge: BridgeFactory) -> None:
    """A forged action request must neither end a pending call nor read its outcome."""
    async with start_bridge(pending_timeout=3.0) as bridge:
        before = baseline(bridge)
        form = voice_form()
        webhook = bridge.public_url + "/twilio/voice"
        assert twiml_of(await post(bridge, "/twilio/voice", form, signed_url=webhook)).verbs == (
            "Connect",
        )
        ended = {"CallSid": form["CallSid"], "AccountSid": form["AccountSid"]}
        action = bridge.public_url + "/twilio/stream-ended"
        internal = bridge.url + "/twilio/stream-ended"
        forged = [
            await post(bridge, "/twilio/stream-ended", ended, signed_url=None),
            await post(bridge, "/twilio/stream-ended", ended, signed_url=internal),
            await post(
                bridge,
                "/twilio/stream-ended",
                ended,
                signed_url=None,
                headers={SIGNATURE_HEADER: "bm90IGEgc2lnbmF0dXJl"},
            ),
            # Signed for another call's parameters.
            await post(
                bridge,
                "/twilio/stream-ended",
                {**ended, "CallSid": "CA" + "9" * 32},
                signed_url=None,
                headers={SIGNATURE_HEADER: sign(DEMO_AUTH_TOKEN, action, ended)},
            ),
        ]
        assert [response.status_code for response in forged] == [403] * 4
        await wait_for_model_connections(bridge, 1)
        # The pending call is untouched: still reserved, its model socket still open.
        assert bridge_of(bridge).pending.by_call_sid(form["CallSid"]) is not None
        assert bridge.self_hosted[0].connections[0].closed_at is None
        assert (await record_of(bridge, form["CallSid"])).end_reason == "no_stream"
        await assert_no_leaks(bridge, before)


# -- replay -------------------------------------------------------------------------------


async def test_a_verbatim_replay_of_an_answered_webhook_opens_nothing(
    bridge: LocalBridge,
) -> None:
    """Twilio's signature has no nonce: a captured webhook stays valid, so the call SID must."""
    before = baseline(bridge)
    call_sid = "CA" + secrets.token_hex(16)
    async with asyncio.timeout(30):
        report = await dial(
            bridge.url,
            to=SHAKSHUKA,
            auth_token=DEMO_AUTH_TOKEN,
            public_url=bridge.public_url,
            call_sid=call_sid,
            audio=tone_mulaw(0.3),
            tail=0.2,
        )
    assert report.frames_received > 0
    assert (await record_of(bridge, call_sid)).end_reason == "caller_hangup"
    assert model_connections(bridge) == 1
    # The same signed request again, byte for byte (as a captured one would be).
    replay = {
        "CallSid": call_sid,
        "AccountSid": report.account_sid,
        "From": report.from_,
        "To": report.to,
        "Called": report.to,
        "Caller": report.from_,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    answer = twiml_of(
        await post(bridge, "/twilio/voice", replay, signed_url=bridge.public_url + "/twilio/voice")
    )
    assert answer.verbs == ("Hangup",)
    assert model_connections(bridge) == 1
    assert (await record_of(bridge, call_sid)).end_reason == "caller_hangup"  # row untouched
    await assert_no_leaks(bridge, before)


# -- the media socket while a call is pending ---------------------------------------------


async def open_stream(bridge: LocalBridge, signature: str | None) -> ClientConnection:
    ws_url = bridge.url.replace("http://", "ws://") + "/twilio/media"
    headers = {} if signature is None else {SIGNATURE_HEADER: signature}
    return await connect(ws_url, additional_headers=headers, ping_interval=None)


async def start_stream(
    ws: ClientConnection, call_sid: str, parameters: Mapping[str, str]
) -> TwilioStreamWriter:
    writer = TwilioStreamWriter("MZ" + secrets.token_hex(16), "AC" + "1" * 32, call_sid)
    await ws.send(writer.connected())
    await ws.send(writer.start(parameters))
    return writer


async def test_refused_and_reused_streams_open_no_second_model_session(
    bridge: LocalBridge,
) -> None:
    before = baseline(bridge)
    form = voice_form()
    answer = twiml_of(
        await post(bridge, "/twilio/voice", form, signed_url=bridge.public_url + "/twilio/voice")
    )
    assert answer.stream_url is not None
    assert urlsplit(answer.stream_url).path == "/twilio/media"
    await wait_for_model_connections(bridge, 1)
    assert model_connections(bridge) == 1  # the webhook opened the call's one session
    valid = sign(DEMO_AUTH_TOKEN, answer.stream_url, {})
    # No signature, a forged one, one for the internal URL: refused at the upgrade.
    internal = bridge.url.replace("http://", "ws://") + "/twilio/media"
    for signature in (None, "bm90IGEgc2lnbmF0dXJl", sign(DEMO_AUTH_TOKEN, internal, {})):
        with pytest.raises(InvalidStatus) as refused:
            await open_stream(bridge, signature)
        assert refused.value.response.status_code == 403
    # A valid signature without the token, or with the token and another call SID.
    for call_sid, parameters in (
        (form["CallSid"], {k: v for k, v in answer.parameters.items() if k != "token"}),
        ("CA" + "7" * 32, answer.parameters),
    ):
        async with await open_stream(bridge, valid) as ws:
            await start_stream(ws, call_sid, parameters)
            async with asyncio.timeout(5):
                await ws.wait_closed()
        assert ws.close_code == 1008
    assert model_connections(bridge) == 1
    # The token was burnt by the wrong call SID: the genuine stream is refused too,
    # and the abandoned reservation's model socket is closed, not leaked.
    async with await open_stream(bridge, valid) as ws:
        await start_stream(ws, form["CallSid"], answer.parameters)
        async with asyncio.timeout(5):
            await ws.wait_closed()
    assert ws.close_code == 1008
    assert model_connections(bridge) == 1
    await assert_no_leaks(bridge, before)


async def test_a_claimed_token_cannot_open_a_second_stream(bridge: LocalBridge) -> None:
    before = baseline(bridge)
    form = voice_form()
    answer = twiml_of(
        await post(bridge, "/twilio/voice", form, signed_url=bridge.public_url + "/twilio/voice")
    )
    assert answer.stream_url is not None
    valid = sign(DEMO_AUTH_TOKEN, answer.stream_url, {})
    async with await open_stream(bridge, valid) as first:
        writer = await start_stream(first, form["CallSid"], answer.parameters)
        async with asyncio.timeout(10):
            while form["CallSid"] not in bridge_of(bridge).live:
                await first.send(writer.media(bytes([0xFF]) * 160, 0))
                await asyncio.sleep(0.02)
        # The same signed upgrade, token and call SID again (a replayed stream).
        async with await open_stream(bridge, valid) as second:
            await start_stream(second, form["CallSid"], answer.parameters)
            async with asyncio.timeout(5):
                await second.wait_closed()
        assert second.close_code == 1008
        assert model_connections(bridge) == 1
        assert form["CallSid"] in bridge_of(bridge).live  # the real call goes on
        await first.send(writer.stop())
    assert (await record_of(bridge, form["CallSid"])).end_reason == "caller_hangup"
    assert model_connections(bridge) == 1
    await assert_no_leaks(bridge, before)
