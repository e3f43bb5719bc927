"""Outbound fixtures: the real bridge (outbound enabled) and a fake Twilio Calls API.

The fake API (phonebridge/simulators/twilio_api.py, a test double) is what the
bridge's real ``twilio`` client talks to, through ``TWILIO_API_URL``; its
callees are the phone simulator answering as a person or a machine, or not at all.

The other carriers (carriers.py: each one's fake API, factory and personas) are
started by ``carrier_outbounds``, the factory of the test's ``carrier``, for the
scenarios they share (test_carrier_scenarios.py); test_<carrier>_calls.py use the
typed factory of theirs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from phonebridge.local import PUBLIC_URL, LocalBridge, SimulatorOptions
from phonebridge.outbound.campaigns import CampaignRunner
from phonebridge.outbound.service import Outbound
from phonebridge.outbound.store import Attempt, OutboundStore
from phonebridge.simulators.phone.routes import Routes
from phonebridge.simulators.twilio_api import Callee, FakeTwilioApi

from ..conftest import BridgeFactory
from .carriers import (
    ACCOUNT,
    CALLER_ID,
    CARRIERS,
    VOICEMAIL_PERSONA,
    AnyFactory,
    twilio_api,
    vonage_key_pair,
    write_personas,
)

DIAL_TIME_PERSONA = """\
name: Dial-time caller
provider: personaplex
voice: NATF1
prompt: You work for CitySan and call customers to remind them of their pickup day.
outbound:
  open_model: dial
"""


class FakeWall:
    """An injected wall clock (epoch seconds) the test moves by hand."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now


@dataclass
class Outbounds:
    bridge: LocalBridge
    api: FakeTwilioApi
    http: httpx.AsyncClient

    @property
    def outbound(self) -> Outbound:
        deps = self.bridge.app.state.deps.outbound
        assert deps is not None
        found: Outbound = deps[0]
        return found

    @property
    def runner(self) -> CampaignRunner:
        found: CampaignRunner = self.bridge.app.state.deps.outbound[1]
        return found

    async def call(self, **body: Any) -> httpx.Response:
        return await self.http.post(
            self.bridge.url + "/api/calls", json=body, headers={"X-Phonebridge-Operator": "alice"}
        )


OutboundFactory = Callable[..., AbstractAsyncContextManager[Outbounds]]


@pytest.fixture
def personas_dir(personas_dir: Path) -> Path:
    (personas_dir / "reminder.yaml").write_text(VOICEMAIL_PERSONA)
    (personas_dir / "dialtime.yaml").write_text(DIAL_TIME_PERSONA)
    write_personas(personas_dir)
    return personas_dir


@pytest.fixture(scope="session")
def key_pair() -> tuple[str, str]:
    """The Vonage application's private key (PEM) and its public key."""
    return vonage_key_pair()


@pytest.fixture
def carrier_outbounds(
    carrier: str, start_bridge: BridgeFactory, key_pair: tuple[str, str]
) -> AnyFactory:
    """``async with carrier_outbounds(callees, **settings) as o:`` the bridge calling out
    through the test's ``carrier`` (a parameter of the test, a key of CARRIERS)."""
    return CARRIERS[carrier].start(start_bridge, key_pair)


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    return SimulatorOptions(reply="echo", conditioning_delay=0.05, self_hosted_servers=3)


@pytest.fixture
def start_outbound(start_bridge: BridgeFactory) -> OutboundFactory:
    @asynccontextmanager
    async def factory(
        callees: dict[str, Callee] | None = None, **overrides: Any
    ) -> AsyncIterator[Outbounds]:
        settings: dict[str, Any] = {
            "outbound_enabled": True,
            "outbound_countries": (1,),
            "outbound_caller_ids": (CALLER_ID,),
            "twilio_account_sid": ACCOUNT,
            "caller_max_calls_per_hour": 0,
            "caller_max_concurrent": 0,
            "max_new_calls_per_minute": 0,
        }
        settings.update(overrides)
        api = twilio_api(callees)
        async with api, contextlib.AsyncExitStack() as stack:
            bridge = await stack.enter_async_context(
                start_bridge(twilio_api_url=api.url, **settings)
            )
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
            api.routes = Routes(PUBLIC_URL, bridge.url)
            yield Outbounds(bridge, api, http)

    return factory


async def claim(
    store: OutboundStore,
    to: str,
    *,
    carrier: str,
    at: datetime,
    replica: str = "dead",
    persona: str = "citysan",
    from_number: str = CALLER_ID,
) -> Attempt:
    """An operator's call claimed at ``at`` by ``replica`` (by default a crashed one),
    written before its dial, as the bridge writes it."""
    return await store.add_attempt(
        to_number=to,
        from_number=from_number,
        persona=persona,
        placed_by="operator:test",
        variables={},
        now=at,
        replica=replica,
        carrier=carrier,
    )
