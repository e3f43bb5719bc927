"""Carrier flavours of the phone simulator — TEST DOUBLES, not clients of any carrier.

``phonebridge dial --carrier telnyx|plivo|vonage|signalwire|exotel`` places a
call the way that carrier does (CARRIERS.md): its signed webhook, its answer
document (or Telnyx's REST commands, on the loopback :class:`~.rest.
FakeCarrierApi`), its socket handshake auth, its messages at its rate, codec
and frame rules, its playback buffer with marks and clear, its refusal of
malformed app messages, and its way of ending a stream. One module per
carrier (:mod:`.telnyx`, :mod:`.plivo`, :mod:`.vonage`, :mod:`.signalwire`,
:mod:`.exotel`) over the shared driver in :mod:`.base`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from phonebridge.errors import ConfigError
from phonebridge.simulators.phone.audio_files import read_wav_as_pcm16, write_pcm16_wav
from phonebridge.simulators.phone.carriers.base import Auth, CarrierCall, CarrierFlavour, token
from phonebridge.simulators.phone.carriers.exotel import ExotelFlavour
from phonebridge.simulators.phone.carriers.plivo import PlivoFlavour
from phonebridge.simulators.phone.carriers.rest import ApiCredentials, FakeCarrierApi
from phonebridge.simulators.phone.carriers.signalwire import SignalWireFlavour
from phonebridge.simulators.phone.carriers.telnyx import TelnyxFlavour
from phonebridge.simulators.phone.carriers.vonage import VonageFlavour
from phonebridge.simulators.phone.report import DialReport
from phonebridge.simulators.phone.routes import Routes

CARRIERS: Final = ("telnyx", "plivo", "vonage", "signalwire", "exotel")


def dev_telnyx_key() -> Ed25519PrivateKey:
    """A fixed key pair for local development only (its seed is public, like the dev token)."""
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"phonebridge development Telnyx key").digest()
    )


@dataclass(frozen=True, slots=True)
class CarrierSecrets:
    """What the simulated carrier signs with (the bridge is configured to match)."""

    telnyx_private_key: Ed25519PrivateKey | None = None
    telnyx_api_key: str = ""
    plivo_auth_id: str = ""
    plivo_auth_token: str = ""
    vonage_signature_secret: str = ""
    vonage_api_key: str = ""
    signalwire_signing_key: str = ""
    signalwire_project_id: str = ""
    signalwire_api_token: str = ""
    exotel_basic_user: str = ""
    exotel_basic_password: str = ""

    def api_credentials(self) -> ApiCredentials:
        return ApiCredentials(
            telnyx_api_key=self.telnyx_api_key,
            plivo_auth_id=self.plivo_auth_id,
            plivo_auth_token=self.plivo_auth_token,
            signalwire_project_id=self.signalwire_project_id,
            signalwire_api_token=self.signalwire_api_token,
        )


def flavour_for(
    carrier: str, secrets: CarrierSecrets, api: FakeCarrierApi | None, *, camel: bool = False
) -> CarrierFlavour:
    """The flavour for ``carrier``; ``ConfigError`` when a secret it signs with is missing."""
    match carrier:
        case "telnyx":
            if secrets.telnyx_private_key is None or api is None:
                raise ConfigError("telnyx: needs a private key and the fake Call Control API")
            return TelnyxFlavour(secrets.telnyx_private_key, api)
        case "plivo":
            if not secrets.plivo_auth_token:
                raise ConfigError("plivo: needs the auth token to sign V3")
            return PlivoFlavour(
                secrets.plivo_auth_id or "MA" + token()[:18], secrets.plivo_auth_token, api
            )
        case "vonage":
            if not secrets.vonage_signature_secret:
                raise ConfigError("vonage: needs the signature secret to sign JWTs")
            return VonageFlavour(
                secrets.vonage_signature_secret, secrets.vonage_api_key or "abcd1234", api
            )
        case "signalwire":
            if not secrets.signalwire_signing_key:
                raise ConfigError("signalwire: needs the signing key")
            project = secrets.signalwire_project_id or "PJ" + token()[:30]
            return SignalWireFlavour(secrets.signalwire_signing_key, project, api)
        case "exotel":
            return ExotelFlavour(
                secrets.exotel_basic_user, secrets.exotel_basic_password, camel=camel
            )
    raise ConfigError(f"unknown carrier {carrier!r} (one of {', '.join(CARRIERS)})")


async def dial_carrier(
    carrier: str,
    bridge_url: str,
    *,
    to: str,
    secrets: CarrierSecrets,
    api: FakeCarrierApi | None = None,
    from_: str = "+15005550006",
    rate: int = 16_000,
    audio: Path | bytes | None = None,
    out: Path | None = None,
    fast: bool = False,
    gaps: Sequence[tuple[float, float]] = (),
    dtmf: Sequence[tuple[float, str]] = (),
    hangup_after: float | None = None,
    send_stop: bool = True,
    tail: float = 2.0,
    max_call: float = 600.0,
    public_url: str | None = None,
    connect_override: str | None = None,
    webhook_auth: Auth = "valid",
    socket_auth: Auth = "valid",
    camel: bool = False,
    io_timeout: float = 10.0,
) -> DialReport:
    """Place one call to ``bridge_url`` as ``carrier`` would.

    ``rate`` is the caller's leg (8000: a PSTN call; 16000/24000: a wideband
    one); the stream's rate is what the answer asks for, narrowed where the
    carrier narrows it. ``audio`` is a WAV path or raw PCM16 LE at ``rate``.
    The rest is as for :func:`phonebridge.simulators.phone.dial`;
    ``webhook_auth``/``socket_auth`` forge or drop the carrier's signature.
    """
    pcm16 = read_wav_as_pcm16(audio, rate) if isinstance(audio, Path) else audio or b""
    call = CarrierCall(
        flavour_for(carrier, secrets, api, camel=camel),
        routes=Routes(public_url or bridge_url, bridge_url, connect_override),
        report=DialReport(
            call_sid="", account_sid="", stream_sid="", to=to, from_=from_, carrier=carrier
        ),
        rate=rate,
        pcm16=pcm16,
        fast=fast,
        gaps=gaps,
        dtmf=dtmf,
        hangup_after=hangup_after,
        send_stop=send_stop,
        tail=tail,
        max_call=max_call,
        timeout=io_timeout,
        webhook_auth=webhook_auth,
        socket_auth=socket_auth,
    )
    report = await call.run()
    if out is not None:
        write_pcm16_wav(out, bytes(call.heard), report.sample_rate)
        report.heard_path = str(out)
    return report


__all__ = [
    "CARRIERS",
    "CarrierSecrets",
    "FakeCarrierApi",
    "dev_telnyx_key",
    "dial_carrier",
    "flavour_for",
]
