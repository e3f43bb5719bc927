"""The routers of the carriers that are on (a carrier is on when its secret is set),
and the carriers that can dial out.

A carrier that is off gets no routes at all, so its paths answer 404 like any
unknown path (config.CarrierSettings.enabled). A carrier dials out when its
routes are on (the answered call's stream comes to its media socket) and its
REST credentials are set (:func:`dialling_carriers`); its outbound callbacks
are served whenever its routes are on (:func:`outbound_routers`), so a
replica without the REST credentials still settles another replica's calls.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter

from phonebridge.config import CarrierSettings
from phonebridge.outbound.carrier import Dialer, OutboundCarrier
from phonebridge.outbound.service import Outbound
from phonebridge.telephony.carrier_rest import PlivoApi, TelnyxApi
from phonebridge.telephony.exotel.auth import parse_networks
from phonebridge.telephony.exotel.dialer import ExotelDialer
from phonebridge.telephony.plivo.dialer import PlivoDialer
from phonebridge.telephony.signalwire.dialer import SignalWireDialer
from phonebridge.telephony.telnyx.dialer import TelnyxDialer
from phonebridge.telephony.telnyx.signature import load_public_key
from phonebridge.telephony.vonage.dialer import VonageDialer
from phonebridge.web.carriers.common import CarrierEdge
from phonebridge.web.carriers.exotel import exotel_router
from phonebridge.web.carriers.exotel_outbound import exotel_outbound_router
from phonebridge.web.carriers.plivo import form_verifier as plivo_form_verifier
from phonebridge.web.carriers.plivo import plivo_router
from phonebridge.web.carriers.plivo import stream_answer as plivo_stream_answer
from phonebridge.web.carriers.plivo_outbound import plivo_outbound_router
from phonebridge.web.carriers.signalwire import connect_document as signalwire_connect
from phonebridge.web.carriers.signalwire import signalwire_router
from phonebridge.web.carriers.telnyx import telnyx_router
from phonebridge.web.carriers.telnyx_outbound import telnyx_outbound_router
from phonebridge.web.carriers.vonage import vonage_router
from phonebridge.web.carriers.vonage_outbound import vonage_outbound_router
from phonebridge.web.outbound_routes import outbound_signalwire_router


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


def dialling_carriers(
    edge: CarrierEdge, carriers: CarrierSettings, wall_clock: Callable[[], datetime]
) -> dict[str, OutboundCarrier]:
    """The carriers besides Twilio that can place calls here, by name."""
    on = carriers.enabled
    dialers: dict[str, OutboundCarrier] = {}

    def add(dialer: Dialer) -> None:
        dialers[dialer.name] = OutboundCarrier(dialer, rate=edge.rate)

    if (
        "signalwire" in on
        and carriers.signalwire_project_id is not None
        and carriers.signalwire_api_token is not None
        and carriers.signalwire_space_url is not None
    ):
        add(
            SignalWireDialer(
                carriers.signalwire_project_id,
                _secret(carriers.signalwire_api_token),
                space_url=carriers.signalwire_space_url,
            )
        )
    if (
        "telnyx" in on
        and carriers.telnyx_api_key is not None
        and carriers.telnyx_connection_id is not None
    ):
        # Call Control: the events come to telnyx_outbound_router, the stream to
        # the Telnyx media socket of the inbound routes.
        add(
            TelnyxDialer(
                edge.http,
                api_url=carriers.telnyx_api_url,
                api_key=_secret(carriers.telnyx_api_key),
                connection_id=carriers.telnyx_connection_id,
            )
        )
    if "plivo" in on and carriers.plivo_auth_id is not None:
        add(
            PlivoDialer(
                carriers.plivo_auth_id,
                _secret(carriers.plivo_auth_token),
                http=edge.http,
                api_url=carriers.plivo_api_url,
            )
        )
    if (
        "vonage" in on
        and carriers.vonage_application_id is not None
        and carriers.vonage_private_key is not None
    ):
        add(
            VonageDialer(
                carriers.vonage_application_id,
                _secret(carriers.vonage_private_key),
                http=edge.http,
                api_url=carriers.vonage_api_url,
            )
        )
    if (
        "exotel" in on
        and carriers.exotel_account_sid is not None
        and carriers.exotel_api_key is not None
        and carriers.exotel_api_token is not None
    ):
        # Connect Voice AI: the media socket connecting is the answer.
        add(
            ExotelDialer(
                edge.http,
                account_sid=carriers.exotel_account_sid,
                api_key=carriers.exotel_api_key,
                api_token=_secret(carriers.exotel_api_token),
                api_url=carriers.exotel_api_url,
                basic_user=carriers.exotel_basic_user or "",
                basic_password=_secret(carriers.exotel_basic_password),
                wall_clock=wall_clock,
            )
        )
    return dialers


def outbound_routers(
    edge: CarrierEdge, carriers: CarrierSettings, outbound: Outbound, public_url: str
) -> list[APIRouter]:
    """The outbound callbacks of every carrier whose routes are on (signed like its
    inbound webhooks; each carrier starts an answered call's stream its own way)."""
    on = carriers.enabled
    routers: list[APIRouter] = []
    if "signalwire" in on:
        routers.append(
            outbound_signalwire_router(
                outbound,
                public_url,
                _secret(carriers.signalwire_signing_key),
                signalwire_connect(edge),
            )
        )
    if "telnyx" in on and carriers.telnyx_public_key is not None:
        api = TelnyxApi(edge.http, carriers.telnyx_api_url, _secret(carriers.telnyx_api_key))
        routers.append(
            telnyx_outbound_router(
                edge,
                outbound,
                public_key=load_public_key(carriers.telnyx_public_key),
                api=api,
            )
        )
    if "plivo" in on:
        routers.append(
            plivo_outbound_router(
                outbound,
                plivo_form_verifier(edge, _secret(carriers.plivo_auth_token)),
                plivo_stream_answer(edge),
            )
        )
    if "vonage" in on:
        routers.append(
            vonage_outbound_router(
                outbound,
                edge,
                signature_secret=_secret(carriers.vonage_signature_secret),
                api_key=carriers.vonage_api_key,
            )
        )
    if "exotel" in on:
        routers.append(
            exotel_outbound_router(
                edge,
                outbound,
                user=carriers.exotel_basic_user or "",
                password=_secret(carriers.exotel_basic_password),
                networks=parse_networks(carriers.exotel_allowed_ips or ""),
            )
        )
    return routers
