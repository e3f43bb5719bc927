"""``phonebridge call`` and ``phonebridge campaign``: the API of a running server.

Both talk to ``phonebridge serve`` over its HTTP API (``--url``, default
``http://127.0.0.1:8080``) with the dashboard token (``PHONEBRIDGE_DASHBOARD_TOKEN``,
read by :mod:`phonebridge.config`), so the server's checks (outbound enabled,
E.164, countries, caller IDs, DNC) and its claims apply to them exactly as to
the dashboard. The operator's name (``--operator``, default the login name)
is recorded on every call placed.
"""

from __future__ import annotations

import argparse
import getpass
import json
from pathlib import Path
from typing import Any

import httpx

from phonebridge.config import dashboard_token_from_env

DEFAULT_URL = "http://127.0.0.1:8080"


def _variable(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"--var wants NAME=VALUE, got {text!r}")
    return name.strip(), value


def _client(args: argparse.Namespace) -> httpx.Client:
    headers = {"X-Phonebridge-Operator": args.operator}
    token = dashboard_token_from_env()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=args.url, headers=headers, timeout=30)


def _show(response: httpx.Response) -> int:
    try:
        body: Any = response.json()
    except ValueError:
        body = {"error": response.text}
    print(json.dumps(body, indent=2))
    return 0 if response.is_success else 1


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the server (default {DEFAULT_URL})")
    parser.add_argument("--operator", default=getpass.getuser(), help="recorded as who called")


def _call(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"to": args.to, "persona": args.persona, "variables": dict(args.var)}
    if args.from_:
        body["from"] = args.from_
    with _client(args) as http:
        return _show(http.post("/api/calls", json=body))


def _campaign(args: argparse.Namespace) -> int:
    with _client(args) as http:
        if args.action == "create":
            path = Path(args.contacts)
            text = path.read_text(encoding="utf-8")
            body: dict[str, Any] = {
                "name": args.name,
                "persona": args.persona,
                "concurrency": args.concurrency,
                "max_attempts": args.max_attempts,
                "retry_seconds": args.retry_seconds,
                "window_start": args.window_start,
                "window_end": args.window_end,
            }
            if args.daily_cap is not None:
                body["daily_cap"] = args.daily_cap
            if args.from_:
                body["from"] = args.from_
            if path.suffix.lower() == ".json":
                body["contacts"] = json.loads(text)
            else:
                body["contacts_csv"] = text
            return _show(http.post("/api/campaigns", json=body))
        if args.action == "list":
            return _show(http.get("/api/campaigns"))
        if args.action == "show":
            return _show(http.get(f"/api/campaigns/{args.id}"))
        return _show(http.post(f"/api/campaigns/{args.id}/{args.action}"))


def register(subparsers: Any) -> None:
    call = subparsers.add_parser("call", help="place one outbound call through a running server")
    call.add_argument("--to", required=True, help="E.164 number to call")
    call.add_argument("--persona", required=True)
    call.add_argument("--from", dest="from_", help="caller ID (default: the first allowed)")
    call.add_argument("--var", type=_variable, action="append", default=[], metavar="NAME=VALUE")
    _common(call)
    call.set_defaults(func=_call)

    campaign = subparsers.add_parser("campaign", help="create and control outbound campaigns")
    actions = campaign.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="upload a CSV or JSON contact list")
    create.add_argument("contacts", help="contacts.csv (number,time_zone,<variables>) or .json")
    create.add_argument("--name", required=True)
    create.add_argument("--persona", required=True)
    create.add_argument("--from", dest="from_")
    create.add_argument("--concurrency", type=int, default=1)
    create.add_argument("--daily-cap", type=int)
    create.add_argument("--max-attempts", type=int, default=3)
    create.add_argument("--retry-seconds", type=float, default=3600.0)
    create.add_argument("--window-start", default="08:00")
    create.add_argument("--window-end", default="21:00")
    _common(create)
    listing = actions.add_parser("list")
    _common(listing)
    for name in ("show", "pause", "resume", "cancel"):
        sub = actions.add_parser(name)
        sub.add_argument("id")
        _common(sub)
    campaign.set_defaults(func=_campaign)


__all__ = ["register"]
