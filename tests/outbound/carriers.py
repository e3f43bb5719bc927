"""The five dial-out carriers beside Twilio, as the outbound tests start them.

Each carrier's test double (simulators/<carrier>_api.py), its credentials, its
:class:`CarrierOutbounds` and the factory that starts the bridge with it, plus its
personas. :data:`CARRIERS` holds what the scenarios common to every carrier
(test_carrier_scenarios.py) need to tell them apart; test_<carrier>_calls.py use
the typed factories for what only their carrier does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from phonebridge.config import CarrierSettings
from phonebridge.local import DEMO_AUTH_TOKEN, PUBLIC_URL, LocalBridge
from phonebridge.outbound.service import Outbound
from phonebridge.outbound.store import Attempt
from phonebridge.simulators.exotel_api import FakeExotelApi
from phonebridge.simulators.fake_api import LoopbackFakeApi
from phonebridge.simulators.phone.routes import Routes
from phonebridge.simulators.plivo_api import FakePlivoApi
from phonebridge.simulators.signalwire_api import FakeSignalWireApi
from phonebridge.simulators.telnyx_api import FakeTelnyxApi
from phonebridge.simulators.twilio_api import Callee, FakeTwilioApi
from phonebridge.simulators.vonage_api import FakeVonageApi
from phonebridge.storage.models import CallRecord
from phonebridge.telephony.carrier_leg import bridge_call_sid
from phonebridge.telephony.telnyx.signature import public_key_text
from phonebridge.telephony.vonage.dialer import VonageDialer

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


def twilio_api(callees: dict[str, Callee] | None = None) -> FakeTwilioApi:
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
        twilio = twilio_api()
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


HUMAN = "+14165550121"  # a North American callee (every carrier but Exotel)

SIGNALWIRE_PROJECT = "b6a2c3e4-0000-4000-8000-00000000beef"
SIGNALWIRE_API_TOKEN = "PTsignalwiretoken"
SIGNALWIRE_SIGNING_KEY = "PSKsigningkey"

TELNYX_API_KEY = "KEYtelnyxtest"
TELNYX_CONNECTION = "1684641123236054244"
TELNYX_KEY = Ed25519PrivateKey.generate()

PLIVO_AUTH_ID = "MAPLIVOOUTBOUND01"
PLIVO_AUTH_TOKEN = "plivo-outbound-token"

VONAGE_APPLICATION = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
VONAGE_SECRET = "vonage-signature-secret-0123456789abcdef"
VONAGE_API_KEY = "abcd1234"

EXOTEL_SID = "phonebridgetest1"
EXOTEL_API_KEY = "exotel-api-key"
EXOTEL_API_TOKEN = "exotel-api-token"
EXOTEL_USER = "exotel-socket"
EXOTEL_PASSWORD = "socket-secret"
EXOPHONE = "+918047112345"
EXOTEL_HUMAN = "+919876543211"  # Exotel dials Indian numbers from an ExoPhone

PERSONA_NAMES = {
    "signalwire": "SignalWire",
    "telnyx": "Telnyx",
    "plivo": "Plivo",
    "vonage": "Vonage",
    "exotel": "Exotel",
}
PREFIXES = {"signalwire": "sw", "telnyx": "tx", "plivo": "pv", "vonage": "vg", "exotel": "ex"}


def persona(carrier: str) -> str:
    """A persona bound to ``carrier``."""
    return f"""\
name: {PERSONA_NAMES[carrier]} caller
provider: personaplex
voice: NATF1
prompt: You work for CitySan and call customers to remind them of their pickup day.
carrier: {carrier}
"""


def write_personas(personas_dir: Path) -> None:
    """Each carrier's ``<p>`` (plain), ``<p>dial`` (model opened at dial time) and
    ``<p>reminder`` (voicemail) personas, and ``telnyxonly`` (bound to Telnyx)."""
    for carrier, prefix in PREFIXES.items():
        text = persona(carrier)
        (personas_dir / f"{prefix}.yaml").write_text(text)
        (personas_dir / f"{prefix}dial.yaml").write_text(text + "outbound:\n  open_model: dial\n")
        (personas_dir / f"{prefix}reminder.yaml").write_text(
            VOICEMAIL_PERSONA + f"carrier: {carrier}\n"
        )
    (personas_dir / "telnyxonly.yaml").write_text(persona("telnyx"))


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def vonage_key_pair() -> tuple[str, str]:
    """A Vonage application's private key (PEM) and its public key (the double verifies)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem(key), public.decode()


# -- each carrier's outbounds and factory ---------------------------------------------


class SignalWireOutbounds(CarrierOutbounds[FakeSignalWireApi]):
    carrier = "signalwire"


class TelnyxOutbounds(CarrierOutbounds[FakeTelnyxApi]):
    carrier = "telnyx"

    def actions(self, call_control_id: str) -> list[str]:
        return [r.action for r in self.api.actions if r.call_id == call_control_id]


class PlivoOutbounds(CarrierOutbounds[FakePlivoApi]):
    carrier = "plivo"


@dataclass
class VonageOutbounds(CarrierOutbounds[FakeVonageApi]):
    carrier = "vonage"
    private_key: str

    def dialer(self, http: httpx.AsyncClient) -> VonageDialer:
        return VonageDialer(VONAGE_APPLICATION, self.private_key, http=http, api_url=self.api.url)


class ExotelOutbounds(CarrierOutbounds[FakeExotelApi]):
    carrier = "exotel"


def start_signalwire(
    start_bridge: BridgeFactory,
) -> Callable[..., AbstractAsyncContextManager[SignalWireOutbounds]]:
    return carrier_factory(
        start_bridge,
        SignalWireOutbounds,
        partial(
            FakeSignalWireApi,
            project_id=SIGNALWIRE_PROJECT,
            api_token=SIGNALWIRE_API_TOKEN,
            signing_key=SIGNALWIRE_SIGNING_KEY,
        ),
        lambda url: CarrierSettings(
            rate=16_000,
            signalwire_signing_key=SecretStr(SIGNALWIRE_SIGNING_KEY),
            signalwire_project_id=SIGNALWIRE_PROJECT,
            signalwire_api_token=SecretStr(SIGNALWIRE_API_TOKEN),
            signalwire_space_url=url,
        ),
    )


def start_telnyx(
    start_bridge: BridgeFactory,
) -> Callable[..., AbstractAsyncContextManager[TelnyxOutbounds]]:
    return carrier_factory(
        start_bridge,
        TelnyxOutbounds,
        partial(
            FakeTelnyxApi,
            api_key=TELNYX_API_KEY,
            connection_id=TELNYX_CONNECTION,
            private_key=TELNYX_KEY,
        ),
        lambda url: CarrierSettings(
            rate=16_000,
            telnyx_public_key=public_key_text(TELNYX_KEY),
            telnyx_api_key=SecretStr(TELNYX_API_KEY),
            telnyx_api_url=url,
            telnyx_connection_id=TELNYX_CONNECTION,
        ),
    )


def start_plivo(
    start_bridge: BridgeFactory,
) -> Callable[..., AbstractAsyncContextManager[PlivoOutbounds]]:
    return carrier_factory(
        start_bridge,
        PlivoOutbounds,
        partial(FakePlivoApi, auth_id=PLIVO_AUTH_ID, auth_token=PLIVO_AUTH_TOKEN),
        lambda url: CarrierSettings(
            rate=16_000,
            plivo_auth_id=PLIVO_AUTH_ID,
            plivo_auth_token=SecretStr(PLIVO_AUTH_TOKEN),
            plivo_api_url=url,
        ),
    )


def start_vonage(
    start_bridge: BridgeFactory, key_pair: tuple[str, str]
) -> Callable[..., AbstractAsyncContextManager[VonageOutbounds]]:
    private_key, public_key = key_pair
    return carrier_factory(
        start_bridge,
        partial(VonageOutbounds, private_key=private_key),
        partial(
            FakeVonageApi,
            application_id=VONAGE_APPLICATION,
            public_key_pem=public_key,
            signature_secret=VONAGE_SECRET,
            api_key=VONAGE_API_KEY,
        ),
        lambda url: CarrierSettings(
            rate=16_000,
            vonage_signature_secret=SecretStr(VONAGE_SECRET),
            vonage_api_key=VONAGE_API_KEY,
            vonage_application_id=VONAGE_APPLICATION,
            vonage_private_key=SecretStr(private_key),
            vonage_api_url=url,
        ),
    )


def start_exotel(
    start_bridge: BridgeFactory,
) -> Callable[..., AbstractAsyncContextManager[ExotelOutbounds]]:
    return carrier_factory(
        start_bridge,
        ExotelOutbounds,
        partial(
            FakeExotelApi,
            account_sid=EXOTEL_SID,
            api_key=EXOTEL_API_KEY,
            api_token=EXOTEL_API_TOKEN,
        ),
        lambda url: CarrierSettings(
            rate=16_000,
            exotel_basic_user=EXOTEL_USER,
            exotel_basic_password=SecretStr(EXOTEL_PASSWORD),
            exotel_account_sid=EXOTEL_SID,
            exotel_api_key=EXOTEL_API_KEY,
            exotel_api_token=SecretStr(EXOTEL_API_TOKEN),
            exotel_api_url=url,
        ),
        outbound_countries=(91,),
        outbound_caller_ids=(EXOPHONE,),
    )


# -- what the common scenarios tell apart ---------------------------------------------

AnyFactory = Callable[..., AbstractAsyncContextManager[CarrierOutbounds[Any]]]


def _as_written(number: str) -> str:
    return number


def _digits(number: str) -> str:
    return number[1:]


@dataclass(frozen=True)
class Carrier:
    """One carrier's facts for the scenarios every carrier shares."""

    start: Callable[[BridgeFactory, tuple[str, str]], AnyFactory]
    persona: str  # bound to the carrier, the model opened on answer
    dial_persona: str  # bound to the carrier, the model opened at dial time
    human: str  # a callee in a country the factory allows
    call_id: Callable[[Any], str]  # a created call's id in the fake API (the attempt's call_sid)
    written: Callable[[str], str] = _as_written  # a number as the carrier's API writes it


CARRIERS: dict[str, Carrier] = {
    "signalwire": Carrier(
        lambda bridge, _: start_signalwire(bridge), "sw", "swdial", HUMAN, lambda c: c.sid
    ),
    "telnyx": Carrier(
        lambda bridge, _: start_telnyx(bridge), "tx", "txdial", HUMAN, lambda c: c.call_control_id
    ),
    "plivo": Carrier(
        lambda bridge, _: start_plivo(bridge), "pv", "pvdial", HUMAN, lambda c: c.uuid
    ),
    "vonage": Carrier(start_vonage, "vg", "vgdial", HUMAN, lambda c: c.uuid, _digits),
    "exotel": Carrier(
        lambda bridge, _: start_exotel(bridge), "ex", "exdial", EXOTEL_HUMAN, lambda c: c.sid
    ),
}
