"""What makes a call personal: business hours, the context lookup, the rendered texts.

Issue 15. :meth:`phonebridge.calls.bridge.Bridge.admit` (the one reservation
path every leg shares: Twilio, the browser, carriers, outbound) asks this
module two things, in order:

1. :meth:`PersonalCalls.during_hours` — is the line open? Outside hours the
   call gets the ``closed`` message (no lease, no model) or another persona.
2. :meth:`PersonalCalls.prepare` — after a slot is taken and before the model
   session opens: the context lookup, then the prompt and fallback rendered
   with the call's variables. It never raises and never drops the call: a
   failed lookup or a template error gives the fallback prompt (the persona's
   ``context.fallback_prompt``, or the prompt with its personal parts left
   out), a log line and a counter.

The Twilio entry asks a third: :meth:`PersonalCalls.answer_within` — how long
the webhook may hold its answer for the model to be ready
(:mod:`phonebridge.calls.ready_answer`).

The prompt rendered is the one the call's ``SessionRequest`` carries (the
persona's, or a one-call override such as the Talk page's try-a-prompt); the
rendered text replaces it in the request the model opens with, and it is
recorded as a call event unless the persona says ``record_prompt: false``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from phonebridge.calls.context import ContextClient, ContextOutcome, ContextRequest, ContextResult
from phonebridge.personas.book import PersonaBook
from phonebridge.personas.hours import is_open
from phonebridge.personas.schema import MAX_PROMPT_CHARS, Persona
from phonebridge.personas.templates import (
    CallFacts,
    TemplateRenderError,
    call_variables,
    is_template,
    render,
    render_impersonal,
)

log = logging.getLogger(__name__)

MAX_CARRIER_FIELDS = 64
MAX_CARRIER_VALUE_CHARS = 256
_LOOKUP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class PersonalMetrics:
    """Counters for the personal-call paths, on the bridge's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.render_errors = Counter(
            "phonebridge_template_render_errors",
            "Texts whose template failed to render at call time (the fallback was used)",
            ["text"],
            registry=registry,
        )
        self.context_lookups = Counter(
            "phonebridge_context_lookups",
            "Context webhook lookups by outcome (ok, timeout, http_status, redirect, ...)",
            ["outcome"],
            registry=registry,
        )
        self.context_seconds = Histogram(
            "phonebridge_context_lookup_seconds",
            "Time the context lookup added to the voice webhook",
            buckets=_LOOKUP_BUCKETS,
            registry=registry,
        )
        self.closed_calls = Counter(
            "phonebridge_calls_outside_hours",
            "Calls outside business hours, by what they got (closed message, routed)",
            ["answer"],
            registry=registry,
        )
        self.answer_held = Histogram(
            "phonebridge_answer_held_seconds",
            "How long the voice webhook held its answer for the model to be ready",
            buckets=_LOOKUP_BUCKETS,
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """The facts of a call being admitted that a personal call uses (from any leg)."""

    call_sid: str
    from_number: str
    to_number: str
    direction: str = "inbound"
    channel: str = "twilio"
    """The kind of leg (``twilio``, ``browser``, a carrier's name): the lookup's ``carrier``."""
    carrier: Mapping[str, str] = field(default_factory=dict)
    """The carrier's own call fields (Twilio's form), for ``{{ carrier.X }}``."""
    contact: Mapping[str, str] = field(default_factory=dict)
    """Per-call values the entry brings (an outbound contact row, ``--var``), for
    ``{{ contact.X }}``."""


def carrier_fields(form: Mapping[str, str]) -> dict[str, str]:
    """A carrier's call fields as template values, bounded in count and length."""
    return {
        key: str(value)[:MAX_CARRIER_VALUE_CHARS]
        for key, value in list(form.items())[:MAX_CARRIER_FIELDS]
    }


def call_direction(form: Mapping[str, str]) -> str:
    """``inbound`` or ``outbound`` from Twilio's ``Direction`` (``outbound-api``...)."""
    return "outbound" if form.get("Direction", "inbound").startswith("outbound") else "inbound"


@dataclass(frozen=True, slots=True)
class ClosedAnswer:
    """Outside hours: say this and hang up."""

    text: str


@dataclass(frozen=True, slots=True)
class Prepared:
    prompt: str
    """The prompt for this call, rendered (or the fallback prompt)."""
    events: list[tuple[float, str, str]]
    """Call events for the transcript: the context outcome, the prompt given."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class PersonalCalls:
    """Hours, context and templates for the bridge; one per process."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        wall_clock: Callable[[], datetime] = utc_now,
        clock: Callable[[], float] | None = None,
        context: ContextClient | None = None,
        answer_within_seconds: float = 0.0,
        remembered_calls: int = 512,
    ) -> None:
        self.metrics = PersonalMetrics(registry or CollectorRegistry())
        self._wall_clock = wall_clock
        self._clock = clock or (lambda: wall_clock().timestamp())
        self._context = context
        self._answer_within = answer_within_seconds
        # Rendered fallback texts until the call's action request asks (bounded).
        self._fallback_say: OrderedDict[str, str] = OrderedDict()
        self._remembered = remembered_calls

    # -- hours -----------------------------------------------------------------------

    def during_hours(
        self, persona: Persona, book: PersonaBook, call: IncomingCall
    ) -> Persona | ClosedAnswer:
        """The persona that takes the call now, or the closed message."""
        if self._open(persona):
            return persona
        route = persona.closed.route_to
        target = book.by_id(route) if route is not None else None
        if target is not None and self._open(target):
            self.metrics.closed_calls.labels("routed").inc()
            log.info("outside hours: routed to %s", target.id, extra={"call_sid": call.call_sid})
            return target
        self.metrics.closed_calls.labels("closed").inc()
        return ClosedAnswer(self.say_text(persona.closed.say, call, persona, "closed"))

    def _open(self, persona: Persona) -> bool:
        if persona.hours is None or persona.timezone is None:
            return True
        return is_open(persona.hours, persona.timezone, self._wall_clock())

    # -- texts -----------------------------------------------------------------------

    def _facts(self, call: IncomingCall, persona: Persona) -> CallFacts:
        return CallFacts(
            caller_number=call.from_number,
            dialled_number=call.to_number,
            persona_name=persona.name,
            now=self._wall_clock(),
            timezone=persona.timezone,
        )

    def say_text(self, text: str, call: IncomingCall, persona: Persona, what: str) -> str:
        """A message said before any lookup (busy, closed): built-ins and carrier fields."""
        if not is_template(text):
            return text
        variables = call_variables(
            self._facts(call, persona), carrier=call.carrier, contact=call.contact
        )
        return self._render_or_impersonal(text, variables, variables, call, what)

    def _render_or_impersonal(
        self,
        text: str,
        variables: Mapping[str, Any],
        impersonal: Mapping[str, Any],
        call: IncomingCall,
        what: str,
    ) -> str:
        try:
            rendered = render(text, variables)
        except TemplateRenderError as exc:
            self.metrics.render_errors.labels(what).inc()
            log.warning(
                "%s template failed (%s); said without its personal parts",
                what,
                exc,
                extra={"call_sid": call.call_sid},
            )
            rendered = render_impersonal(text, impersonal)
        return rendered or render_impersonal(text, {})

    def fallback_say(self, call_sid: str, persona: Persona) -> str:
        """The call's rendered ``fallback.say`` (the template's text if it was not kept)."""
        return self._fallback_say.pop(call_sid, None) or render_impersonal(persona.fallback.say, {})

    # -- the lookup and the prompt -------------------------------------------------

    async def prepare(self, call: IncomingCall, persona: Persona, prompt: str) -> Prepared:
        """This call's ``prompt`` (a template) rendered; never raises (see the module docstring)."""
        facts = self._facts(call, persona)
        base = call_variables(facts, carrier=call.carrier, contact=call.contact)
        events: list[tuple[float, str, str]] = []
        variables = base
        lookup_failed = False
        if persona.context is not None:
            result = await self._lookup(call, persona)
            detail = f": {result.detail}" if result.detail else ""
            events.append((0.0, "context", result.outcome.value + detail))
            if result.ok:
                variables = call_variables(
                    facts, carrier=call.carrier, contact=call.contact, extra=[result.variables]
                )
            else:
                lookup_failed = True
        rendered: str | None = None
        if not lookup_failed:
            try:
                rendered = _bounded(render(prompt, variables))
            except TemplateRenderError as exc:
                self.metrics.render_errors.labels("prompt").inc()
                log.warning(
                    "prompt template failed (%s); using the fallback prompt",
                    exc,
                    extra={"call_sid": call.call_sid, "persona": persona.id},
                )
                events.append((0.0, "prompt_error", str(exc)[:200]))
        if rendered is None:
            rendered = self._fallback_prompt(persona, prompt, base, call)
        if is_template(persona.fallback.say):
            self._remember_fallback(
                call.call_sid,
                self._render_or_impersonal(persona.fallback.say, variables, base, call, "fallback"),
            )
        if persona.record_prompt:
            events.append((0.0, "prompt", rendered))
        return Prepared(rendered, events)

    async def _lookup(self, call: IncomingCall, persona: Persona) -> ContextResult:
        hook = persona.context
        assert hook is not None
        if self._context is None:
            result = ContextResult(ContextOutcome.UNSIGNED, {}, "no context client configured")
        else:
            started = self._clock()
            result = await self._context.lookup(
                hook,
                ContextRequest(
                    call_sid=call.call_sid,
                    from_number=call.from_number,
                    to_number=call.to_number,
                    persona=persona.id,
                    direction=call.direction,
                    carrier=call.channel,
                ),
            )
            self.metrics.context_seconds.observe(max(0.0, self._clock() - started))
        self.metrics.context_lookups.labels(result.outcome.value).inc()
        if not result.ok:
            log.warning(
                "context lookup failed (%s: %s); using the fallback prompt",
                result.outcome.value,
                result.detail,
                extra={"call_sid": call.call_sid, "persona": persona.id},
            )
        return result

    def _fallback_prompt(
        self, persona: Persona, prompt: str, base: Mapping[str, Any], call: IncomingCall
    ) -> str:
        """``context.fallback_prompt``, else the prompt without its personal parts."""
        fallback = persona.context.fallback_prompt if persona.context is not None else None
        if fallback is not None:
            text = self._render_or_impersonal(fallback, base, base, call, "fallback_prompt")
        else:
            text = render_impersonal(prompt, base)
        # Never empty (an empty prompt crashes a self-hosted session, PROTOCOLS.md §2.1),
        # never over the URL budget.
        return text[:MAX_PROMPT_CHARS].strip() or persona.name

    def _remember_fallback(self, call_sid: str, text: str) -> None:
        self._fallback_say[call_sid] = text
        while len(self._fallback_say) > self._remembered:
            self._fallback_say.popitem(last=False)

    # -- answering -------------------------------------------------------------------

    def answer_within(self, persona: Persona) -> float:
        """Seconds the webhook may wait for the model before answering (0 = at once)."""
        if persona.answer_within_seconds is not None:
            return persona.answer_within_seconds
        return self._answer_within


def _bounded(text: str) -> str:
    """A rendered prompt must have text and fit the same URL budget as a written one."""
    if not text.strip():
        raise TemplateRenderError("the prompt rendered empty")
    if len(text) > MAX_PROMPT_CHARS:
        raise TemplateRenderError(
            f"the rendered prompt has {len(text)} characters (at most {MAX_PROMPT_CHARS})"
        )
    return text
