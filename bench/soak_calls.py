"""The soak's callers: one simulated call per scenario, and what became of it.

Most calls are ordinary (the caller talks, then hangs up with ``stop``); the
rest fail on the phone side in the ways issue 8 lists. Model-side faults are
not chosen per call: they live in the simulators (one self-hosted server
never hand-shakes, one dies mid-call), and the pool's lease order sends
ordinary calls to them, as a real pool would. "Busy" happens by itself: more
concurrent calls than self-hosted servers, and three of the five shipped
personas have no overflow provider.

Every call holds its caller "slot" for its planned length even when the
bridge answered at once (busy, rejected): a real caller listens to the busy
message too, and it keeps the call rate steady instead of a tight retry loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.phone.routes import Routes
from phonebridge.simulators.phone.twiml_reader import TwimlRejectedError, read_twiml
from phonebridge.simulators.phone.wire import TwilioStreamWriter
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign

# Scenario -> weight. Ordinary calls dominate, as on a real line.
SCENARIOS: Final[dict[str, float]] = {
    "normal": 0.62,
    "drop_without_stop": 0.10,  # the caller's socket drops, no ``stop``
    "forged_webhook": 0.06,  # webhook signed with the wrong auth token: 403
    "forged_stream": 0.06,  # valid webhook, stream upgrade with a forged signature
    "wrong_token": 0.06,  # valid webhook and upgrade, ``start`` with a made-up token
    "ring_hangup": 0.05,  # webhook answered, the stream never comes (hung up ringing)
    "stop_twice": 0.05,  # ordinary call whose caller sends ``stop`` twice
    "repeat_caller": 0.05,  # one number calling again and again: the toll-fraud guard
}
REPEAT_CALLER: Final = "+15005550006"
FORGED_AUTH_TOKEN: Final = "not-the-auth-token"


@dataclass(frozen=True, slots=True)
class CallPlan:
    scenario: str
    to: str
    seconds: float
    from_: str = REPEAT_CALLER


@dataclass(frozen=True, slots=True)
class Line:
    """How callers reach the bridge (the phone simulator's view)."""

    bridge_url: str  # http://127.0.0.1:PORT
    public_url: str  # what Twilio signs
    auth_token: str
    numbers: tuple[str, ...]  # dialled numbers to spread calls over
    caller_audio: bytes  # 8 kHz mu-law, at least as long as the longest call


def plan_call(rng: random.Random, line: Line, min_s: float, max_s: float) -> CallPlan:
    """A random call. Callers are distinct numbers (a public line is called by
    many people; the guard limits each), except the deliberate repeat caller."""
    scenario = rng.choices(list(SCENARIOS), weights=list(SCENARIOS.values()))[0]
    caller = REPEAT_CALLER if scenario == "repeat_caller" else f"+1555{rng.randrange(10**7):07d}"
    return CallPlan(scenario, rng.choice(line.numbers), rng.uniform(min_s, max_s), caller)


async def place_call(line: Line, plan: CallPlan) -> str:
    """Run one call to its end; returns ``scenario:result`` for the tally."""
    try:
        result = await _run(line, plan)
    except Exception as exc:  # a benchmark tallies surprises instead of stopping
        result = f"error-{type(exc).__name__}"
    return f"{plan.scenario}:{result}"


async def _run(line: Line, plan: CallPlan) -> str:
    match plan.scenario:
        case "normal" | "drop_without_stop" | "forged_webhook" | "repeat_caller":
            report = await dial(
                line.bridge_url,
                to=plan.to,
                from_=plan.from_,
                public_url=line.public_url,
                auth_token=(
                    FORGED_AUTH_TOKEN if plan.scenario == "forged_webhook" else line.auth_token
                ),
                audio=line.caller_audio,
                hangup_after=plan.seconds,
                send_stop=plan.scenario != "drop_without_stop",
            )
            if report.webhook_status not in (None, 200):
                return f"http{report.webhook_status}"
            if report.ended_by == "twiml" and not report.dialled:
                return "said_and_hung_up"  # busy, or not in service
            return report.ended_by or "unknown"
        case "stop_twice":
            return await _stream_by_hand(line, plan, forge_signature=False, bad_token=False)
        case "forged_stream":
            return await _stream_by_hand(line, plan, forge_signature=True, bad_token=False)
        case "wrong_token":
            return await _stream_by_hand(line, plan, forge_signature=False, bad_token=True)
        case "ring_hangup":
            async with httpx.AsyncClient(timeout=10) as http:
                answer = await _webhook(http, line, plan.to, _call_params(plan))
            return "no_stream" if answer is not None else "said_and_hung_up"
    raise ValueError(f"unknown scenario {plan.scenario!r}")


def _call_params(plan: CallPlan) -> dict[str, str]:
    return {
        "CallSid": "CA" + secrets.token_hex(16),
        "AccountSid": "AC" + secrets.token_hex(16),
        "From": plan.from_,
        "To": plan.to,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }


async def _webhook(
    http: httpx.AsyncClient, line: Line, to: str, params: Mapping[str, str]
) -> tuple[str, dict[str, str]] | None:
    """POST the signed voice webhook: the stream URL and parameters, or None if not streamed."""
    url = line.public_url + "/twilio/voice"
    headers = {SIGNATURE_HEADER: sign(line.auth_token, url, dict(params))}
    routes = Routes(line.public_url, line.bridge_url)
    response = await http.post(routes.http(url), data=dict(params), headers=headers)
    response.raise_for_status()
    try:
        answer = read_twiml(response.text, response.headers.get("content-type"))
    except TwimlRejectedError:
        return None
    if answer.stream_url is None:
        return None
    return answer.stream_url, dict(answer.parameters)


async def _stream_by_hand(
    line: Line, plan: CallPlan, *, forge_signature: bool, bad_token: bool
) -> str:
    """A stream the phone simulator would never open: forged, wrong token, or ``stop`` twice."""
    params = _call_params(plan)
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await _webhook(http, line, plan.to, params)
    if answer is None:
        return "said_and_hung_up"
    stream_url, parameters = answer
    if bad_token:
        parameters["token"] = secrets.token_urlsafe(16)
    key = FORGED_AUTH_TOKEN if forge_signature else line.auth_token
    writer = TwilioStreamWriter(
        "MZ" + secrets.token_hex(16), params["AccountSid"], params["CallSid"]
    )
    try:
        socket = await connect(
            Routes(line.public_url, line.bridge_url).websocket(stream_url),
            additional_headers={SIGNATURE_HEADER: sign(key, stream_url, {})},
            open_timeout=10,
            close_timeout=10,
            ping_interval=None,
            compression=None,
        )
    except InvalidStatus as exc:
        return f"upgrade{exc.response.status_code}"
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        return f"upgrade-{type(exc).__name__}"
    async with socket:
        # Read all along: an unread socket would push back on the bridge's sends.
        reader = asyncio.create_task(_drain(socket))
        await socket.send(writer.connected())
        await socket.send(writer.start(parameters))
        if not bad_token:
            await _talk(socket, writer, line.caller_audio, plan.seconds)
            with contextlib.suppress(ConnectionClosed):
                await socket.send(writer.stop())
                await socket.send(writer.stop())  # the second one must change nothing
        await asyncio.wait({reader}, timeout=10)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    return f"closed{socket.close_code}"


async def _drain(socket: ClientConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in socket:
            pass


async def _talk(
    socket: ClientConnection, writer: TwilioStreamWriter, audio: bytes, seconds: float
) -> None:
    """The caller's media at real-time pace (20 ms frames)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index in range(int(seconds * 50)):
        offset = (index * 160) % len(audio)
        chunk = audio[offset : offset + 160].ljust(160, b"\xff")
        try:
            await socket.send(writer.media(chunk, index * 20))
        except ConnectionClosed:
            return  # the bridge ended the call (model died...): nothing more to say
        await asyncio.sleep(max(0.0, start + (index + 1) * 0.02 - loop.time()))
