"""Prompt templates: checking with file:line, strict rendering, the impersonal fallback."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from phonebridge.personas.loader import PersonaError, load_personas
from phonebridge.personas.templates import (
    CallFacts,
    TemplateRenderError,
    call_variables,
    check_template,
    render,
    render_impersonal,
)

FACTS = CallFacts(
    caller_number="+14165550111",
    dialled_number="+14165550101",
    persona_name="CitySan",
    now=datetime(2024, 4, 12, 18, 5, tzinfo=UTC),
    timezone="America/Toronto",
)

HEAD = 'name: A\nnumbers: ["+14165550101"]\nprovider: personaplex\nvoice: NATF1\n'


def problems_of(tmp_path: Path, body: str) -> list[str]:
    (tmp_path / "a.yaml").write_text(HEAD + body)
    with pytest.raises(PersonaError) as caught:
        load_personas(tmp_path)
    return [f"{p.line}: {p.message}" for p in caught.value.problems]


def test_builtins_are_the_call_and_the_local_clock() -> None:
    variables = call_variables(FACTS)
    text = (
        "{{ caller_number }} {{ dialled_number }} {{ persona_name }} "
        "{{ local_date }} {{ local_time }} {{ local_weekday }}"
    )
    assert render(text, variables) == "+14165550111 +14165550101 CitySan 2024-04-12 14:05 Friday"


def test_a_context_reply_never_replaces_a_builtin_or_a_namespace() -> None:
    variables = call_variables(
        FACTS,
        carrier={"FromCity": "Toronto"},
        extra=[{"caller_number": "+1999", "carrier": "x", "customer": {"name": "Omar"}}],
    )
    assert render("{{ caller_number }} {{ carrier.FromCity }} {{ customer.name }}", variables) == (
        "+14165550111 Toronto Omar"
    )


def test_an_undefined_value_is_an_error_not_a_gap() -> None:
    with pytest.raises(TemplateRenderError, match="customer"):
        render("Verify {{ customer.name }}.", call_variables(FACTS))


def test_the_sandbox_refuses_python_internals() -> None:
    with pytest.raises(TemplateRenderError, match=r"SecurityError|unsafe"):
        render("{{ caller_number.__class__.__mro__ }}", call_variables(FACTS))


def test_a_filter_failure_is_a_render_error() -> None:
    with pytest.raises(TemplateRenderError, match="ZeroDivisionError"):
        render("{{ 1 / 0 }}", call_variables(FACTS))


def test_the_impersonal_render_leaves_the_personal_parts_out() -> None:
    text = "Hello {{ customer.name }}, it is {{ local_time }}."
    assert render_impersonal(text, call_variables(FACTS)) == "Hello , it is 14:05."
    # Even a template that fails leniently gives text: its tags are cut out.
    assert render_impersonal("Hi {{ 1 / 0 }} there", {}) == "Hi there"


def test_check_reports_syntax_errors_with_the_templates_line() -> None:
    [problem] = check_template("one\ntwo {{ oops }\n", allow_context=True)
    assert problem.line == 2
    assert "syntax error" in problem.message


def test_check_allows_any_name_only_with_a_context_webhook() -> None:
    assert check_template("{{ customer.name }}", allow_context=True) == []
    [problem] = check_template("{{ customer.name }}", allow_context=False)
    assert "unknown variable 'customer'" in problem.message
    assert check_template("{{ carrier.FromCity }} {{ local_date }}", allow_context=False) == []


def test_personas_check_gives_file_lines_inside_a_literal_block(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        "prompt: |\n  Hello {{ caller_number }}.\n  Verify {{ customer.name }}.\n"
        'busy_message: "Busy {{ persona_name }"\n',
    )
    assert problems[0].startswith("7: prompt: unknown variable 'customer'")
    assert problems[1].startswith("8: busy_message: template syntax error")


def test_personas_check_finds_the_line_in_a_folded_prompt(tmp_path: Path) -> None:
    [problem] = problems_of(
        tmp_path, "prompt: >\n  Hello there.\n  Your name is {{ customer.name }}\n  ok.\n"
    )
    assert problem.startswith("7: prompt: unknown variable 'customer'")


def test_busy_and_closed_texts_cannot_use_context_values(tmp_path: Path) -> None:
    # They are said before the lookup runs: only built-ins exist then.
    problems = problems_of(
        tmp_path,
        "prompt: Hi {{ customer.name }}\ncontext:\n  url: http://127.0.0.1:9/ctx\n"
        "closed:\n  say: Closed, {{ customer.name }}\n",
    )
    assert len(problems) == 1
    assert problems[0].startswith("9: closed.say: unknown variable")


def test_a_persona_with_templates_and_context_loads(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        HEAD
        + "timezone: America/Toronto\nprompt: Verify {{ customer.name }} ({{ caller_number }})\n"
        "context:\n  url: https://crm.example/lookup\n  timeout_ms: 500\n"
        "  fallback_prompt: Ask the caller for their name.\n"
    )
    persona = load_personas(tmp_path).by_id("a")
    assert persona is not None
    assert persona.context is not None
    assert persona.context.timeout_ms == 500


def test_context_settings_are_checked(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        "prompt: hi\ncontext:\n  url: ftp://x\n  timeout_ms: 99999\ntimezone: Mars/Olympus\n",
    )
    text = "\n".join(problems)
    assert "7: context.url: 'ftp://x' is not an http(s) URL" in text
    assert "8: context.timeout_ms" in text
    assert "9: timezone: unknown time zone 'Mars/Olympus'" in text
