"""Per-call prompt templates (issue 15, "Prompt templates with per-call variables").

A persona's ``prompt``, ``fallback.say``, ``busy_message`` and ``closed.say`` may
use Jinja2 expressions: ``{{ customer.name }}``, ``{{ caller_number }}``. They are
rendered once per call, in the voice webhook, before the model session opens
(the prompt is a connect parameter, PROTOCOLS.md §2.1).

Why Jinja2's sandbox and not string.Template: the issue asks for a sandboxed
engine, and persona authors want ``default`` filters and conditionals
(``{% if customer %}...{% endif %}``); the sandbox keeps a template from
reaching Python internals (``{{ x.__class__ }}``). Autoescape is off (the
text is a prompt, not HTML); undefined names are strict, so a missing value
is an error we handle, never a silent gap in what the model is told.

Variables, one mapping per call (:func:`call_variables`):

- built-ins: ``caller_number``, ``dialled_number``, ``persona_name``,
  ``local_date`` (``2024-04-12``), ``local_time`` (``14:05``), ``local_weekday``
  (``Friday``), in the persona's ``timezone`` (UTC when unset);
- ``carrier``: the carrier's own call fields (Twilio's form: ``CallerName``,
  ``FromCity``, ``SipHeader_X-...``), as ``{{ carrier.FromCity }}``;
- ``contact``: per-call values the entry brings (an outbound campaign's contact
  row, ``--var``: ``NewCall.variables``; empty for inbound calls);
- every top-level key of the context webhook's reply (``customer`` ...).

Sources are plain mappings merged in that order; a later source never
replaces a built-in or a namespace (a context reply cannot forge
``caller_number``). A new source is one more mapping, nothing else.

Checking (``phonebridge personas check``): syntax errors, and names that are
neither built-ins nor namespaces in a persona without a context webhook (there
is nowhere else such a value could come from), are reported with ``file:line``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

BUILTINS: frozenset[str] = frozenset(
    {
        "caller_number",
        "dialled_number",
        "persona_name",
        "local_date",
        "local_time",
        "local_weekday",
    }
)
NAMESPACES: frozenset[str] = frozenset({"carrier", "contact"})
"""Sources that live under one name (``carrier.X``, ``contact.X``)."""

RESERVED: frozenset[str] = BUILTINS | NAMESPACES

_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


class TemplateRenderError(Exception):
    """A template could not be rendered for this call (an undefined value, a filter error)."""


def _environment(undefined: type[jinja2.Undefined]) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        autoescape=False,
        undefined=undefined,
        keep_trailing_newline=False,
        # The text is a prompt: no HTML, no surprising whitespace rules.
        trim_blocks=True,
        lstrip_blocks=True,
    )


_STRICT = _environment(jinja2.StrictUndefined)
# For the fallback: personal parts (values the call did not get) render as
# nothing, chained attributes included ({{ customer.name }} -> "").
_LENIENT = _environment(jinja2.ChainableUndefined)


def is_template(text: str) -> bool:
    """Does ``text`` use any template syntax? (Plain text skips the engine entirely.)"""
    return "{{" in text or "{%" in text or "{#" in text


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    """One problem in one template: ``line`` is 1-based inside the template text."""

    line: int
    message: str
    needle: str = ""
    """Text to look for in the file when the template's own line is not the file's
    (a folded ``>`` scalar joins lines): the unknown name, or empty."""


def check_template(text: str, *, allow_context: bool) -> list[TemplateProblem]:
    """Syntax errors and unknown names in ``text``; empty when it is fine.

    ``allow_context``: the persona has a context webhook, so names beyond the
    built-ins may come from its reply.
    """
    if not is_template(text):
        return []
    try:
        tree = _STRICT.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        return [TemplateProblem(exc.lineno or 1, f"template syntax error: {exc.message}")]
    if allow_context:
        return []
    problems = []
    for name in sorted(meta.find_undeclared_variables(tree)):
        if name in RESERVED:
            continue
        lines = [i for i, line in enumerate(text.splitlines(), start=1) if name in line]
        problems.append(
            TemplateProblem(
                lines[0] if lines else 1,
                f"unknown variable {name!r}: built-ins are {', '.join(sorted(BUILTINS))}; "
                "carrier.* and contact.* are namespaces; other names need a context webhook "
                "(context: url)",
                needle=name,
            )
        )
    return problems


def render(text: str, variables: Mapping[str, Any]) -> str:
    """``text`` rendered strictly; raises :class:`TemplateRenderError` on any failure."""
    if not is_template(text):
        return text
    try:
        return _STRICT.from_string(text).render(variables).strip()
    except Exception as exc:
        # Any exception: a filter on a value of the wrong type raises TypeError,
        # {{ 1 / n }} ZeroDivisionError; a call must never fail on one.
        raise TemplateRenderError(f"{type(exc).__name__}: {exc}") from exc


def render_impersonal(text: str, variables: Mapping[str, Any]) -> str:
    """``text`` with the values the call lacks left out (the last-resort prompt).

    Built-ins are still filled in; if even that fails, every template tag is
    cut out of the text, which cannot fail.
    """
    if not is_template(text):
        return text
    try:
        return _LENIENT.from_string(text).render(variables).strip()
    except Exception:
        return " ".join(_TAG.sub(" ", text).split())


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the bridge knows about a call when the webhook arrives."""

    caller_number: str
    dialled_number: str
    persona_name: str
    now: datetime  # aware
    timezone: str | None = None


def builtins(facts: CallFacts) -> dict[str, str]:
    zone = ZoneInfo(facts.timezone) if facts.timezone else ZoneInfo("UTC")
    local = facts.now.astimezone(zone)
    return {
        "caller_number": facts.caller_number,
        "dialled_number": facts.dialled_number,
        "persona_name": facts.persona_name,
        "local_date": local.date().isoformat(),
        "local_time": local.strftime("%H:%M"),
        "local_weekday": local.strftime("%A"),
    }


def call_variables(
    facts: CallFacts,
    *,
    carrier: Mapping[str, str] | None = None,
    contact: Mapping[str, Any] | None = None,
    extra: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The variables of one call: built-ins, the namespaces, then each extra source.

    ``extra`` (the context webhook's reply, in order) adds top-level names; it
    never replaces a built-in or a namespace.
    """
    variables: dict[str, Any] = {
        **builtins(facts),
        "carrier": dict(carrier or {}),
        "contact": dict(contact or {}),
    }
    for source in extra:
        for key, value in source.items():
            if key not in RESERVED:
                variables[key] = value
    return variables
