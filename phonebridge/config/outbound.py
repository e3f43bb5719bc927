"""Outbound calls and campaigns (docs/outbound.md): off unless an operator turns them on."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from phonebridge.config.carriers import DIALLING_CARRIERS

if TYPE_CHECKING:
    from phonebridge.config.settings import Settings

_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


@dataclass(frozen=True, slots=True)
class _Dialling:
    """What a carrier needs to place calls, and the problem to report without it."""

    ready: Callable[[Settings], bool]
    missing: str


# One row per carrier in DIALLING_CARRIERS (a test holds the two together).
# The checks ask only for what the carrier's own checks do not already pair up:
# e.g. TELNYX_API_KEY is required with TELNYX_PUBLIC_KEY by CarrierSettings.
_DIALLING: dict[str, _Dialling] = {
    "twilio": _Dialling(
        lambda s: s.twilio_account_sid is not None and s.twilio_auth_token is not None,
        "PHONEBRIDGE_OUTBOUND_ENABLED is on but TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN "
        "are not both set: the calls are placed through Twilio's REST API",
    ),
    "signalwire": _Dialling(
        lambda s: (
            s.carriers.signalwire_space_url is not None
            and s.carriers.signalwire_signing_key is not None
        ),
        "PHONEBRIDGE_OUTBOUND_CARRIER is signalwire but SIGNALWIRE_SIGNING_KEY, "
        "SIGNALWIRE_PROJECT_ID, SIGNALWIRE_API_TOKEN and SIGNALWIRE_SPACE_URL are not all "
        "set: the calls are placed through its Compatibility API",
    ),
    "exotel": _Dialling(
        lambda s: s.carriers.exotel_api_token is not None and "exotel" in s.carriers.enabled,
        "PHONEBRIDGE_OUTBOUND_CARRIER is exotel but EXOTEL_ACCOUNT_SID, EXOTEL_API_KEY and "
        "EXOTEL_API_TOKEN, and EXOTEL_BASIC_USER/_PASSWORD or EXOTEL_ALLOWED_IPS (the media "
        "socket's check), are not all set",
    ),
    "plivo": _Dialling(
        lambda s: s.carriers.plivo_auth_token is not None and s.carriers.plivo_auth_id is not None,
        "PHONEBRIDGE_OUTBOUND_CARRIER is plivo but PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN are "
        "not both set: the calls are placed through Plivo's Call API",
    ),
    "vonage": _Dialling(
        lambda s: (
            s.carriers.vonage_signature_secret is not None
            and s.carriers.vonage_application_id is not None
            and s.carriers.vonage_private_key is not None
        ),
        "PHONEBRIDGE_OUTBOUND_CARRIER is vonage but VONAGE_SIGNATURE_SECRET, "
        "VONAGE_APPLICATION_ID and VONAGE_PRIVATE_KEY are not all set: the calls are "
        "placed through its Voice API",
    ),
    "telnyx": _Dialling(
        lambda s: (
            s.carriers.telnyx_public_key is not None and s.carriers.telnyx_connection_id is not None
        ),
        "PHONEBRIDGE_OUTBOUND_CARRIER is telnyx but TELNYX_PUBLIC_KEY, TELNYX_API_KEY and "
        "TELNYX_CONNECTION_ID are not all set: the calls are placed through Call Control",
    ),
}


def check_outbound(settings: Settings, problems: list[str]) -> None:
    """Outbound dialling spends money: when it is on, every guard rail must be set."""
    for number in settings.outbound_caller_ids:
        if not _E164.fullmatch(number):
            problems.append(
                f"PHONEBRIDGE_OUTBOUND_CALLER_IDS: {number!r} is not an E.164 number "
                "(e.g. +14165550123)"
            )
    if not 1 <= settings.outbound_ring_seconds <= 600:
        problems.append("PHONEBRIDGE_OUTBOUND_RING_SECONDS must be 1..600 (Twilio's range)")
    if settings.outbound_carrier not in DIALLING_CARRIERS:
        problems.append(
            f"PHONEBRIDGE_OUTBOUND_CARRIER {settings.outbound_carrier!r} cannot place calls: "
            f"one of {', '.join(DIALLING_CARRIERS)}"
        )
    if not settings.outbound_enabled:
        return
    if not settings.outbound_countries:
        problems.append(
            "PHONEBRIDGE_OUTBOUND_ENABLED is on but PHONEBRIDGE_OUTBOUND_COUNTRIES is empty: "
            "list the country calling codes that may be dialled (e.g. 1)"
        )
    if not settings.outbound_caller_ids:
        problems.append(
            "PHONEBRIDGE_OUTBOUND_ENABLED is on but PHONEBRIDGE_OUTBOUND_CALLER_IDS is empty: "
            "list the numbers of your Twilio account that may call out"
        )
    dialling = _DIALLING.get(settings.outbound_carrier)
    if dialling is not None and not dialling.ready(settings):
        problems.append(dialling.missing)
