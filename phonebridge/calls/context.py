"""The context webhook client (issue 15, "Context webhook"; docs/webhooks.md).

Before the model session opens, a persona with ``context: {url, ...}`` asks the
business who is calling: one signed POST with the call's facts, answered by a
JSON object of variables that fill the prompt template.

The caller is ringing while this runs, so every failure is an outcome, not an
exception: the call goes on with the persona's fallback prompt, a counter and
a log line. What counts as a failure, decided:

- no answer within ``timeout_ms`` (connect, request and reply together);
- a connection refused or reset;
- any status but 2xx; a redirect too (never followed: the reply must come
  from the configured URL, and following would spend the budget twice);
- a body over :data:`MAX_REPLY_BYTES` (read in chunks and cut there, so a
  huge reply costs at most that much memory), not JSON, not an object, or
  with values other than strings and objects of strings, keys that are not
  template names, nesting deeper than :data:`MAX_DEPTH`, more than
  :data:`MAX_VALUES` values.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx

from phonebridge.personas.schema import ContextHook
from phonebridge.webhooks.signing import signed_headers

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 16 * 1024
"""A caller's record as template values is a few hundred bytes; 16 KiB leaves room
without letting a broken CRM hand the prompt (capped at 2000 chars) megabytes."""
MAX_DEPTH = 3
"""``customer.address.city`` is depth 3."""
MAX_VALUES = 200
MAX_VALUE_CHARS = 2000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
USER_AGENT = "phonebridge-context/1"


class ContextOutcome(StrEnum):
    OK = "ok"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    HTTP_STATUS = "http_status"
    REDIRECT = "redirect"
    OVERSIZE = "oversize"
    MALFORMED = "malformed"
    UNSIGNED = "unsigned"  # no PHONEBRIDGE_WEBHOOK_SECRET: nothing is sent unsigned


@dataclass(frozen=True, slots=True)
class ContextRequest:
    """The lookup's body (docs/webhooks.md, "Context lookup")."""

    call_sid: str
    from_number: str
    to_number: str
    persona: str
    direction: str = "inbound"
    carrier: str = "twilio"

    def body(self) -> bytes:
        return json.dumps(
            {
                "call_sid": self.call_sid,
                "from": self.from_number,
                "to": self.to_number,
                "persona": self.persona,
                "direction": self.direction,
                "carrier": self.carrier,
            },
            separators=(",", ":"),
        ).encode()


@dataclass(frozen=True, slots=True)
class ContextResult:
    outcome: ContextOutcome
    variables: Mapping[str, Any]
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome is ContextOutcome.OK


class _Invalid(Exception):
    pass


def parse_reply(body: bytes) -> dict[str, Any]:
    """The reply's variables, or :class:`ValueError` saying what is wrong with it."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON: {str(exc)[:80]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {type(data).__name__}, not an object")
    count = [0]
    try:
        return _checked(data, 1, count)
    except _Invalid as exc:
        raise ValueError(str(exc)) from None


def _checked(obj: dict[str, Any], depth: int, count: list[int]) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise _Invalid(f"nested deeper than {MAX_DEPTH} levels")
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if not _NAME.fullmatch(key):
            raise _Invalid(f"key {key[:40]!r} is not a template name (letters, digits, _)")
        count[0] += 1
        if count[0] > MAX_VALUES:
            raise _Invalid(f"more than {MAX_VALUES} values")
        if isinstance(value, str):
            if len(value) > MAX_VALUE_CHARS:
                raise _Invalid(f"{key}: longer than {MAX_VALUE_CHARS} characters")
            out[key] = value
        elif isinstance(value, dict):
            out[key] = _checked(value, depth + 1, count)
        else:
            raise _Invalid(f"{key}: a {type(value).__name__}; values must be strings or objects")
    return out


class ContextClient:
    """Asks a persona's context URL about one call; never raises."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        secret: str | None,
        wall_time: Callable[[], float],
    ) -> None:
        self._client = client
        self._secret = secret
        self._wall_time = wall_time  # Unix seconds, for the signature's timestamp

    async def lookup(self, hook: ContextHook, request: ContextRequest) -> ContextResult:
        if self._secret is None:
            return ContextResult(ContextOutcome.UNSIGNED, {}, "PHONEBRIDGE_WEBHOOK_SECRET unset")
        body = request.body()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            **signed_headers(self._secret, self._wall_time(), body),
        }
        try:
            async with asyncio.timeout(hook.timeout_ms / 1000):
                return await self._post(hook.url, headers, body)
        except TimeoutError:
            return ContextResult(
                ContextOutcome.TIMEOUT, {}, f"no answer within {hook.timeout_ms} ms"
            )
        except httpx.HTTPError as exc:
            return ContextResult(ContextOutcome.UNREACHABLE, {}, f"{type(exc).__name__}: {exc}")

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> ContextResult:
        async with self._client.stream(
            "POST", url, content=body, headers=headers, follow_redirects=False
        ) as response:
            if response.is_redirect:
                where = response.headers.get("location", "")[:80]
                return ContextResult(
                    ContextOutcome.REDIRECT, {}, f"HTTP {response.status_code} to {where!r}"
                )
            if not response.is_success:
                return ContextResult(ContextOutcome.HTTP_STATUS, {}, f"HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_REPLY_BYTES:
                return ContextResult(
                    ContextOutcome.OVERSIZE, {}, f"{declared} bytes (limit {MAX_REPLY_BYTES})"
                )
            received = bytearray()
            async for chunk in response.aiter_bytes():
                received += chunk
                if len(received) > MAX_REPLY_BYTES:
                    return ContextResult(
                        ContextOutcome.OVERSIZE, {}, f"over {MAX_REPLY_BYTES} bytes"
                    )
        try:
            variables = parse_reply(bytes(received))
        except ValueError as exc:
            return ContextResult(ContextOutcome.MALFORMED, {}, str(exc))
        return ContextResult(ContextOutcome.OK, variables)
