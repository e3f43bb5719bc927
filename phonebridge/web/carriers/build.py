"""The routers of the carriers that are on (a carrier is on when its secret is set).

A carrier that is off gets no routes at all, so its paths answer 404 like any
unknown path (config.CarrierSettings.enabled).
"""

from __future__ import annotations

from fastapi import APIRouter

from phonebridge.config import CarrierSettings
from phonebridge.telephony.carrier_rest import PlivoApi, TelnyxApi
from phonebridge.telephony.exotel.auth import parse_networks
from phonebridge.telephony.telnyx.signature import load_public_key
from phonebridge.web.carriers.common import CarrierEdge
from phonebridge.web.carriers.exotel import exotel_router
from phonebridge.web.carriers.plivo import plivo_router
from phonebridge.web.carriers.signalwire import signalwire_router
from phonebridge.web.carriers.telnyx import telnyx_router
from phonebridge.web.carriers.vonage import vonage_router


def _secret(value: object) -> str:
    getter = getattr(value, "get_secret_value", None)
    return str(getter()) if getter is not None else ""


def carrier_routers(edge: CarrierEdge, carriers: CarrierSettings) -> list[APIRouter]:
    """One router per enabled carrier (settings were validated: the pairs are complete)."""
    on = carriers.enabled
    routers: list[APIRouter] = []
    if "telnyx" in on and carriers.telnyx_public_key is not None:
        api = TelnyxApi(edge.http, carriers.telnyx_api_url, _secret(carriers.telnyx_api_key))
        routers.append(
            telnyx_router(edge, public_key=load_public_key(carriers.telnyx_public_key), api=api)
        )
    if "plivo" in on:
        token = _secret(carriers.plivo_auth_token)
        plivo_api = PlivoApi(edge.http, carriers.plivo_api_url, carriers.plivo_auth_id or "", token)
        routers.append(plivo_router(edge, auth_token=token, api=plivo_api))
    if "vonage" in on:
        routers.append(
            vonage_router(
                edge,
                signature_secret=_secret(carriers.vonage_signature_secret),
                api_key=carriers.vonage_api_key,
            )
        )
    if "signalwire" in on:
        routers.append(
            signalwire_router(edge, signing_key=_secret(carriers.signalwire_signing_key))
        )
    if "exotel" in on:
        routers.append(
            exotel_router(
                edge,
                user=carriers.exotel_basic_user or "",
                password=_secret(carriers.exotel_basic_password),
                networks=parse_networks(carriers.exotel_allowed_ips or ""),
            )
        )
    return routers
