"""The carriers besides Twilio: their credentials, which are on, and what each needs.

A carrier whose verification secret is unset is off (its routes answer 404);
one set without the values it needs alongside fails start-up with one line
saying what is missing (CARRIERS.md; docs/carriers.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import SecretStr

from phonebridge.config.reader import Reader, environ_or_os
from phonebridge.errors import ConfigError
from phonebridge.telephony.exotel.auth import parse_networks
from phonebridge.telephony.telnyx.signature import load_public_key
from phonebridge.telephony.vonage.dialer import private_key_problem

CARRIERS = ("telnyx", "plivo", "vonage", "signalwire", "exotel")
"""The carriers besides Twilio (phonebridge/telephony/<carrier>/)."""
DIALLING_CARRIERS = ("twilio", "signalwire", "telnyx", "plivo", "vonage", "exotel")
"""The carriers outbound calls can be placed through (docs/outbound.md)."""


@dataclass(frozen=True, slots=True)
class CarrierSettings:
    """Credentials of the further carriers; a carrier is on when its secret is set."""

    rate: int = 16_000
    telnyx_public_key: str | None = None
    telnyx_api_key: SecretStr | None = None
    telnyx_api_url: str = "https://api.telnyx.com"
    telnyx_connection_id: str | None = None
    plivo_auth_id: str | None = None
    plivo_auth_token: SecretStr | None = None
    plivo_api_url: str = "https://api.plivo.com"
    vonage_signature_secret: SecretStr | None = None
    vonage_api_key: str | None = None
    vonage_application_id: str | None = None
    vonage_private_key: SecretStr | None = None
    vonage_api_secret: SecretStr | None = None  # the Application API only (configure)
    vonage_api_url: str = "https://api.nexmo.com"
    signalwire_signing_key: SecretStr | None = None
    signalwire_project_id: str | None = None
    signalwire_api_token: SecretStr | None = None
    signalwire_space_url: str | None = None
    exotel_basic_user: str | None = None
    exotel_basic_password: SecretStr | None = None
    exotel_allowed_ips: str | None = None
    exotel_account_sid: str | None = None
    exotel_api_key: str | None = None
    exotel_api_token: SecretStr | None = None
    exotel_api_url: str = "https://api.in.exotel.com"

    @property
    def enabled(self) -> tuple[str, ...]:
        on = {
            "telnyx": self.telnyx_public_key is not None,
            "plivo": self.plivo_auth_token is not None,
            "vonage": self.vonage_signature_secret is not None,
            "signalwire": self.signalwire_signing_key is not None,
            "exotel": self.exotel_basic_user is not None or self.exotel_allowed_ips is not None,
        }
        return tuple(name for name in CARRIERS if on[name])

    def problems(self) -> list[str]:
        found: list[str] = []
        if self.rate not in (8_000, 16_000):
            found.append(f"PHONEBRIDGE_CARRIER_RATE must be 8000 or 16000, not {self.rate}")
        if self.telnyx_public_key is not None:
            try:
                load_public_key(self.telnyx_public_key)
            except ConfigError as exc:
                found.append(f"TELNYX_PUBLIC_KEY: {exc}")
        pairs = (
            ("TELNYX_PUBLIC_KEY", self.telnyx_public_key, "TELNYX_API_KEY", self.telnyx_api_key),
            ("PLIVO_AUTH_TOKEN", self.plivo_auth_token, "PLIVO_AUTH_ID", self.plivo_auth_id),
            (
                "VONAGE_APPLICATION_ID",
                self.vonage_application_id,
                "VONAGE_PRIVATE_KEY",
                self.vonage_private_key,
            ),
            (
                "EXOTEL_BASIC_USER",
                self.exotel_basic_user,
                "EXOTEL_BASIC_PASSWORD",
                self.exotel_basic_password,
            ),
        )
        for name, value, needed, other in pairs:
            if (value is None) != (other is None):
                have, lack = (name, needed) if other is None else (needed, name)
                found.append(f"{have} is set but {lack} is not: set both, or neither")
        if self.vonage_private_key is not None:
            problem = private_key_problem(self.vonage_private_key.get_secret_value())
            if problem is not None:
                found.append(f"VONAGE_PRIVATE_KEY: {problem}")
        rest = (self.signalwire_project_id, self.signalwire_api_token, self.signalwire_space_url)
        if any(v is not None for v in rest) and not all(v is not None for v in rest):
            found.append(
                "SIGNALWIRE_PROJECT_ID, SIGNALWIRE_API_TOKEN and SIGNALWIRE_SPACE_URL go "
                "together (REST call control): set all three, or none"
            )
        exotel_rest = (self.exotel_account_sid, self.exotel_api_key, self.exotel_api_token)
        if any(v is not None for v in exotel_rest) and not all(v is not None for v in exotel_rest):
            found.append(
                "EXOTEL_ACCOUNT_SID, EXOTEL_API_KEY and EXOTEL_API_TOKEN go together "
                "(outbound calls): set all three, or none"
            )
        if self.exotel_allowed_ips is not None:
            try:
                parse_networks(self.exotel_allowed_ips)
            except ConfigError as exc:
                found.append(f"EXOTEL_ALLOWED_IPS: {exc}")
        for name, url in (
            ("TELNYX_API_URL", self.telnyx_api_url),
            ("PLIVO_API_URL", self.plivo_api_url),
            ("VONAGE_API_URL", self.vonage_api_url),
            ("SIGNALWIRE_SPACE_URL", self.signalwire_space_url),
            ("EXOTEL_API_URL", self.exotel_api_url),
        ):
            if url is not None and urlsplit(url).scheme not in ("http", "https"):
                found.append(f"{name} {url!r} is not an http(s) URL")
        return found

    @classmethod
    def read(cls, reader: Reader) -> CarrierSettings:
        return cls(
            rate=reader.integer("PHONEBRIDGE_CARRIER_RATE", 16_000),
            telnyx_public_key=reader.text("TELNYX_PUBLIC_KEY"),
            telnyx_api_key=reader.secret("TELNYX_API_KEY"),
            telnyx_api_url=reader.text("TELNYX_API_URL") or "https://api.telnyx.com",
            telnyx_connection_id=reader.text("TELNYX_CONNECTION_ID"),
            plivo_auth_id=reader.text("PLIVO_AUTH_ID"),
            plivo_auth_token=reader.secret("PLIVO_AUTH_TOKEN"),
            plivo_api_url=reader.text("PLIVO_API_URL") or "https://api.plivo.com",
            vonage_signature_secret=reader.secret("VONAGE_SIGNATURE_SECRET"),
            vonage_api_key=reader.text("VONAGE_API_KEY"),
            vonage_application_id=reader.text("VONAGE_APPLICATION_ID"),
            vonage_private_key=reader.secret("VONAGE_PRIVATE_KEY"),
            vonage_api_secret=reader.secret("VONAGE_API_SECRET"),
            vonage_api_url=reader.text("VONAGE_API_URL") or "https://api.nexmo.com",
            signalwire_signing_key=reader.secret("SIGNALWIRE_SIGNING_KEY"),
            signalwire_project_id=reader.text("SIGNALWIRE_PROJECT_ID"),
            signalwire_api_token=reader.secret("SIGNALWIRE_API_TOKEN"),
            signalwire_space_url=reader.text("SIGNALWIRE_SPACE_URL"),
            exotel_basic_user=reader.text("EXOTEL_BASIC_USER"),
            exotel_basic_password=reader.secret("EXOTEL_BASIC_PASSWORD"),
            exotel_allowed_ips=reader.text("EXOTEL_ALLOWED_IPS"),
            exotel_account_sid=reader.text("EXOTEL_ACCOUNT_SID"),
            exotel_api_key=reader.text("EXOTEL_API_KEY"),
            exotel_api_token=reader.secret("EXOTEL_API_TOKEN"),
            exotel_api_url=reader.text("EXOTEL_API_URL") or "https://api.in.exotel.com",
        )


def carrier_settings_from_env(environ: Mapping[str, str] | None = None) -> CarrierSettings:
    """Only the carrier credentials (``phonebridge dial --carrier`` signs with them)."""
    return CarrierSettings.read(Reader(environ_or_os(environ), []))
