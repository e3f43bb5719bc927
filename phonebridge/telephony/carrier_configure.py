"""``phonebridge <carrier> configure``: point a carrier's number (or application) at the bridge.

The Twilio command (:mod:`phonebridge.telephony.twilio.configure_cli`) for the
further carriers, where the carrier's API allows it. Each sets the URL the
carrier calls for a new call to the bridge's public route for that carrier,
built from the same settings the bridge serves with (so the URL the carrier
signs is the one the bridge checks):

==========  ==========================================  =====================================
carrier     what is changed (REST)                      to
==========  ==========================================  =====================================
telnyx      the Call Control application's              ``<public>/telnyx/voice``
            ``webhook_event_url`` (``PATCH /v2/
            call_control_applications/{id}``; Telnyx
            wants the name with it, so it is read first)
plivo       the application's ``answer_url``            ``<public>/plivo/voice`` (POST)
            (``POST /v1/Account/{auth_id}/Application/
            {app_id}/``)
vonage      the application's voice ``answer_url`` and  ``<public>/vonage/answer`` (GET),
            ``event_url`` with signed callbacks on       ``<public>/vonage/event`` (POST)
            (``GET`` then ``PUT /v2/applications/{id}``:
            a PUT replaces, so the rest is sent back)
signalwire  the number's ``VoiceUrl`` (``IncomingPhone  ``<public>/signalwire/voice`` (POST)
            Numbers``, looked up by the E.164 number)
==========  ==========================================  =====================================

Exotel has no API for this: the Voicebot applet's URL is set in the call
flow builder (docs/carriers.md). Plain ``httpx`` for four small requests, as
in :mod:`.carrier_rest` (why not the SDKs: there).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TextIO

import httpx

from phonebridge.config import Settings, SettingsError
from phonebridge.errors import PhonebridgeError

CONFIGURABLE: Final = ("telnyx", "plivo", "vonage", "signalwire")
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_TIMEOUT_SECONDS: Final = 15.0


class ConfigureError(PhonebridgeError):
    """The carrier refused the change, or could not be reached."""


@dataclass(frozen=True, slots=True)
class Done:
    what: str  # e.g. "Call Control application 1293384261075731499"
    urls: tuple[str, ...]  # "POST https://…" lines


def _check(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code in {401, 403}:
        raise ConfigureError(
            f"{what}: the carrier refused the credentials ({response.status_code})"
        )
    if response.status_code == 404:
        raise ConfigureError(f"{what}: not found (404): check the id")
    if response.status_code >= 300:
        raise ConfigureError(f"{what}: answered {response.status_code}: {response.text[:200]}")
    try:
        body = response.json() if response.content else {}
    except ValueError as exc:
        raise ConfigureError(f"{what}: the answer is not JSON") from exc
    if not isinstance(body, dict):
        raise ConfigureError(f"{what}: the answer is not a JSON object")
    return body


async def _send(http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return await http.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise ConfigureError(f"{method} {url}: {exc!r}") from exc


def _base(url: str) -> str:
    return url.rstrip("/")


# --------------------------------------------------------------------------- per carrier


async def configure_telnyx(
    http: httpx.AsyncClient, *, api_url: str, api_key: str, application_id: str, webhook_url: str
) -> Done:
    url = f"{_base(api_url)}/v2/call_control_applications/{application_id}"
    headers = {"Authorization": f"Bearer {api_key}"}
    what = f"Telnyx Call Control application {application_id}"
    current = _check(await _send(http, "GET", url, headers=headers), what)
    data = current.get("data")
    name = data.get("application_name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        raise ConfigureError(f"{what}: the answer has no application_name")
    body = {"application_name": name, "webhook_event_url": webhook_url, "webhook_api_version": "2"}
    _check(await _send(http, "PATCH", url, json=body, headers=headers), what)
    return Done(what, (f"POST {webhook_url}",))


async def configure_plivo(
    http: httpx.AsyncClient,
    *,
    api_url: str,
    auth_id: str,
    auth_token: str,
    app_id: str,
    answer_url: str,
) -> Done:
    url = f"{_base(api_url)}/v1/Account/{auth_id}/Application/{app_id}/"
    body = {"answer_url": answer_url, "answer_method": "POST"}
    what = f"Plivo application {app_id}"
    _check(await _send(http, "POST", url, json=body, auth=(auth_id, auth_token)), what)
    return Done(what, (f"POST {answer_url}",))


async def configure_vonage(
    http: httpx.AsyncClient,
    *,
    api_url: str,
    api_key: str,
    api_secret: str,
    application_id: str,
    answer_url: str,
    event_url: str,
) -> Done:
    url = f"{_base(api_url)}/v2/applications/{application_id}"
    what = f"Vonage application {application_id}"
    auth = (api_key, api_secret)
    current = _check(await _send(http, "GET", url, auth=auth), what)
    name = current.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigureError(f"{what}: the answer has no name")
    capabilities = current.get("capabilities")
    capabilities = dict(capabilities) if isinstance(capabilities, dict) else {}
    voice = capabilities.get("voice")
    voice = dict(voice) if isinstance(voice, dict) else {}
    webhooks = voice.get("webhooks")
    webhooks = dict(webhooks) if isinstance(webhooks, dict) else {}
    webhooks["answer_url"] = {"address": answer_url, "http_method": "GET"}
    webhooks["event_url"] = {"address": event_url, "http_method": "POST"}
    voice["webhooks"] = webhooks
    voice["signed_callbacks"] = True  # the bridge checks every webhook's JWT
    capabilities["voice"] = voice
    body: dict[str, Any] = {"name": name, "capabilities": capabilities}
    keys = current.get("keys")
    if isinstance(keys, dict) and isinstance(keys.get("public_key"), str):
        body["keys"] = {"public_key": keys["public_key"]}  # keep the key pair (REST hang-up)
    _check(await _send(http, "PUT", url, json=body, auth=auth), what)
    return Done(what, (f"GET {answer_url}", f"POST {event_url}"))


async def configure_signalwire(
    http: httpx.AsyncClient,
    *,
    space_url: str,
    project_id: str,
    api_token: str,
    number: str,
    voice_url: str,
) -> Done:
    base = f"{_base(space_url)}/api/laml/2010-04-01/Accounts/{project_id}/IncomingPhoneNumbers"
    auth = (project_id, api_token)
    what = f"SignalWire number {number}"
    found = _check(
        await _send(http, "GET", f"{base}.json", params={"PhoneNumber": number}, auth=auth), what
    )
    numbers = found.get("incoming_phone_numbers")
    matches = [n for n in numbers or [] if isinstance(n, dict) and n.get("phone_number") == number]
    if not matches or not isinstance(matches[0].get("sid"), str):
        raise ConfigureError(f"{what}: not a number of project {project_id}")
    sid = matches[0]["sid"]
    form = {"VoiceUrl": voice_url, "VoiceMethod": "POST"}
    _check(await _send(http, "POST", f"{base}/{sid}.json", data=form, auth=auth), what)
    return Done(f"{what} ({sid})", (f"POST {voice_url}",))


# --------------------------------------------------------------------------- CLI


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Add ``telnyx|plivo|vonage|signalwire configure``. ``environ`` is for tests."""
    specs: dict[str, tuple[str, str, str]] = {
        "telnyx": (
            "--application-id",
            "the Call Control application (Mission Control > Call Control > Applications)",
            "set the Call Control application's webhook URL to <public url>/telnyx/voice. "
            "Needs TELNYX_API_KEY (and the bridge's Telnyx settings).",
        ),
        "plivo": (
            "--app-id",
            "the Plivo application the number is linked to",
            "set the Plivo application's answer_url to <public url>/plivo/voice (POST). "
            "Needs PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN.",
        ),
        "vonage": (
            "--application-id",
            "the Vonage application (default: VONAGE_APPLICATION_ID)",
            "set the Vonage application's voice answer URL to <public url>/vonage/answer (GET) "
            "and event URL to <public url>/vonage/event (POST), signed callbacks on. Needs "
            "VONAGE_API_KEY and VONAGE_API_SECRET.",
        ),
        "signalwire": (
            "--number",
            "the SignalWire number, E.164 (e.g. +14165550123)",
            "set the number's voice URL to <public url>/signalwire/voice (POST). Needs "
            "SIGNALWIRE_PROJECT_ID, SIGNALWIRE_API_TOKEN and SIGNALWIRE_SPACE_URL.",
        ),
    }
    for carrier, (option, option_help, description) in specs.items():
        parser = subparsers.add_parser(
            carrier,
            help=f"manage the {carrier} side (point it at the bridge)",
            description=f"Manage the {carrier} side of the bridge over its REST API.",
        )
        commands = parser.add_subparsers(
            dest=f"{carrier}_command", metavar="COMMAND", required=True
        )
        configure = commands.add_parser("configure", help=description, description=description)
        configure.add_argument(option, required=carrier != "vonage", help=option_help)
        configure.add_argument(
            "--public-url",
            help="https base URL the carrier reaches (default: PHONEBRIDGE_PUBLIC_URL)",
        )
        configure.set_defaults(
            func=functools.partial(run_configure, carrier=carrier, environ=environ)
        )


def run_configure(
    args: argparse.Namespace,
    *,
    carrier: str,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Exit status: 0 done, 1 the carrier refused, 2 settings or arguments are wrong."""
    out = out or sys.stdout
    err = err or sys.stderr
    prefix = f"phonebridge {carrier} configure"
    try:
        settings = Settings.from_env(environ, public_url=args.public_url)
        job = _job(carrier, settings, args)
    except SettingsError as exc:
        print(f"{prefix}: {exc}", file=err)
        return 2
    try:
        done = asyncio.run(_run(job))
    except ConfigureError as exc:
        print(f"{prefix}: {exc}", file=err)
        return 1
    print(f"{done.what} now sends its calls to " + " and ".join(done.urls), file=out)
    return 0


async def _run(job: Callable[[httpx.AsyncClient], Awaitable[Done]]) -> Done:
    async with httpx.AsyncClient(timeout=_TIMEOUT_SECONDS) as http:
        return await job(http)


def _job(
    carrier: str, settings: Settings, args: argparse.Namespace
) -> Callable[[httpx.AsyncClient], Awaitable[Done]]:
    """The request to make, or ``SettingsError`` naming what is missing (one line each)."""
    c = settings.carriers
    url = settings.webhook_url

    def need(**values: object) -> None:
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise SettingsError(
                [f"{name} is not set: {carrier} configure needs it" for name in missing]
            )

    match carrier:
        case "telnyx":
            need(TELNYX_API_KEY=c.telnyx_api_key)
            assert c.telnyx_api_key is not None
            return functools.partial(
                configure_telnyx,
                api_url=c.telnyx_api_url,
                api_key=c.telnyx_api_key.get_secret_value(),
                application_id=args.application_id,
                webhook_url=url("/telnyx/voice"),
            )
        case "plivo":
            need(PLIVO_AUTH_ID=c.plivo_auth_id, PLIVO_AUTH_TOKEN=c.plivo_auth_token)
            assert c.plivo_auth_id is not None
            assert c.plivo_auth_token is not None
            return functools.partial(
                configure_plivo,
                api_url=c.plivo_api_url,
                auth_id=c.plivo_auth_id,
                auth_token=c.plivo_auth_token.get_secret_value(),
                app_id=args.app_id,
                answer_url=url("/plivo/voice"),
            )
        case "vonage":
            application_id = args.application_id or c.vonage_application_id
            need(
                VONAGE_API_KEY=c.vonage_api_key,
                VONAGE_API_SECRET=c.vonage_api_secret,
                **{"--application-id or VONAGE_APPLICATION_ID": application_id},
            )
            assert c.vonage_api_key is not None
            assert c.vonage_api_secret is not None
            return functools.partial(
                configure_vonage,
                api_url=c.vonage_api_url,
                api_key=c.vonage_api_key,
                api_secret=c.vonage_api_secret.get_secret_value(),
                application_id=str(application_id),
                answer_url=url("/vonage/answer"),
                event_url=url("/vonage/event"),
            )
        case "signalwire":
            number = args.number.strip()
            if not _E164.fullmatch(number):
                raise SettingsError([f"{number!r} is not an E.164 number (e.g. +14165550123)"])
            need(
                SIGNALWIRE_PROJECT_ID=c.signalwire_project_id,
                SIGNALWIRE_API_TOKEN=c.signalwire_api_token,
                SIGNALWIRE_SPACE_URL=c.signalwire_space_url,
            )
            assert c.signalwire_api_token is not None
            return functools.partial(
                configure_signalwire,
                space_url=str(c.signalwire_space_url),
                project_id=str(c.signalwire_project_id),
                api_token=c.signalwire_api_token.get_secret_value(),
                number=number,
                voice_url=url("/signalwire/voice"),
            )
    raise SettingsError([f"{carrier} has no configure (one of {', '.join(CONFIGURABLE)})"])
