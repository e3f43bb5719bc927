"""Outbound fixtures: the real bridge (outbound enabled) and a fake Twilio Calls API.

The fake API (phonebridge/simulators/twilio_api.py, a test double) is what the
bridge's real ``twilio`` client talks to, through ``TWILIO_API_URL``; its
callees are the phone simulator answering as a person or a machine, or not at all.

The other carriers' tests (test_<carrier>_calls.py) build on
:class:`CarrierOutbounds` and :func:`carrier_factory`: the carrier's fake API
(simulators/<carrier>_api.py), with Twilio's configured beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import httpx
import pytest

from phonebridge.config import CarrierSettings
from phonebridge.local import DEMO_AUTH_TOKEN, PUBLIC_URL, LocalBridge, SimulatorOptions
from phonebridge.outbound.campaigns import CampaignRunner
from phonebridge.outbound.service import Outbound
from phonebridge.outbound.store import Attempt, OutboundStore
from phonebridge.simulators.fake_api import LoopbackFakeApi
from phonebridge.simulators.phone.routes import Routes
from phonebridge.simulators.twilio_api import Callee, FakeTwilioApi
from phonebridge.storage.models import CallRecord
from phonebridge.telephony.carrier_leg import bridge_call_sid

from ..conftest import BridgeFactory, record_of

ACCOUNT = "AC" + "0" * 31 + "1"
CALLER_ID = "+14165550100"
UNBOUND = "http://127.0.0.1:1"  # a fake API's bridge address until the bridge has a port

VOICEMAIL_PERSONA = """\
name: Reminder caller
provider: personaplex
voice: NATF1
prompt: You work for CitySan and call customers to remind them of their pickup day.
outbound:
  on_machine: voicemail
  voicemail: Hello, this is CitySan reminding you that pickup is on Tuesday.
  opt_out_message: You will not be called again. Goodbye from CitySan.
"""

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
    return personas_dir


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
        api = _twilio(callees)
        async with api, contextlib.AsyncExitStack() as stack:
            bridge = await stack.enter_async_context(
                start_bridge(twilio_api_url=api.url, **settings)
            )
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
            api.routes = Routes(PUBLIC_URL, bridge.url)
            yield Outbounds(bridge, api, http)

    return factory


def _twilio(callees: dict[str, Callee] | None = None) -> FakeTwilioApi:
    return FakeTwilioApi(
        account_sid=ACCOUNT,
        auth_token=DEMO_AUTH_TOKEN,
        bridge_public_url=PUBLIC_URL,
        bridge_local_url=UNBOUND,
        callees=callees,
    )


ApiT = TypeVar("ApiT", bound=LoopbackFakeApi[Any])


@dataclass
class CarrierOutbounds(Generic[ApiT]):
    """The bridge calling out through ``carrier``'s fake API; ``twilio`` is configured
    too (a call on the carrier must not touch it)."""

    carrier: ClassVar[str]
    bridge: LocalBridge
    api: ApiT
    twilio: FakeTwilioApi
    http: httpx.AsyncClient

    @property
    def outbound(self) -> Outbound:
        found: Outbound = self.bridge.app.state.deps.outbound[0]
        return found

    @property
    def active_calls(self) -> int:
        return int(self.bridge.app.state.deps.bridge.admission.active_calls)

    async def call(self, **body: Any) -> httpx.Response:
        return await self.http.post(self.bridge.url + "/api/calls", json=body)

    async def ended(self, attempt_id: str) -> Attempt:
        async def check() -> Attempt | None:
            found = await self.outbound.store.attempt(attempt_id)
            return found if found is not None and found.state == "ended" else None

        found: Attempt = await eventually(check)
        return found

    async def row(self, carrier_call_id: str) -> CallRecord:
        """The bridge's call record of the carrier's call id."""
        return await record_of(self.bridge, bridge_call_sid(self.carrier, carrier_call_id))


OutT = TypeVar("OutT", bound=CarrierOutbounds[Any])


def carrier_factory(
    start_bridge: BridgeFactory,
    outbounds: Callable[[LocalBridge, ApiT, FakeTwilioApi, httpx.AsyncClient], OutT],
    api: Callable[..., ApiT],
    carriers: Callable[[str], CarrierSettings],
    **defaults: Any,
) -> Callable[..., AbstractAsyncContextManager[OutT]]:
    """``async with factory(callees, **settings) as o:`` the bridge with outbound calls on,
    ``api(bridge_public_url=, bridge_local_url=, callees=)`` the carrier's fake API and
    ``carriers(api.url)`` its settings; ``defaults`` and then ``settings`` override."""

    @asynccontextmanager
    async def factory(
        callees: dict[str, Callee] | None = None, **overrides: Any
    ) -> AsyncIterator[OutT]:
        fake = api(bridge_public_url=PUBLIC_URL, bridge_local_url=UNBOUND, callees=callees)
        twilio = _twilio()
        async with fake, twilio, contextlib.AsyncExitStack() as stack:
            settings: dict[str, Any] = {
                "outbound_enabled": True,
                "outbound_countries": (1,),
                "outbound_caller_ids": (CALLER_ID,),
                "twilio_account_sid": ACCOUNT,
                "twilio_api_url": twilio.url,
                "caller_max_calls_per_hour": 0,
                "caller_max_concurrent": 0,
                "max_new_calls_per_minute": 0,
                "carriers": carriers(fake.url),
                **defaults,
                **overrides,
            }
            bridge = await stack.enter_async_context(start_bridge(**settings))
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
            fake.routes = Routes(PUBLIC_URL, bridge.url)
            yield outbounds(bridge, fake, twilio, http)

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


async def eventually(check: Callable[[], Any], within: float = 15.0) -> Any:
    """Poll an async or sync ``check`` until it returns something truthy."""
    async with asyncio.timeout(within):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(0.05)
