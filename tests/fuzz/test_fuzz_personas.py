"""Fuzzing the persona loader with almost-valid persona files (issue 8, "Bad input").

tests/personas/test_persona_loader.py throws random bytes and shuffled YAML
lines at the loader. Here a *valid* persona is mutated one field at a time —
any YAML value, raw YAML text (tags, anchors, undefined aliases, nesting past
the recursion limit, numbers past every limit), a key dropped or added — so
the fuzzer reaches pydantic's validation and the loader's error wording, not
just the YAML scanner. Alias bombs ("billion laughs") are aimed at every
field: a few lines that expand to hundreds of millions of values.

The property: :func:`load_personas` returns a book or raises
:class:`PersonaError` naming the file, quickly, whatever the file holds.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from phonebridge.personas import PersonaBook, PersonaError, load_personas
from phonebridge.personas.templates import (
    CallFacts,
    TemplateRenderError,
    call_variables,
    check_template,
    render,
    render_impersonal,
)

from .hostile import FUZZ_SETTINGS, deep_json, huge_number_texts, json_values

VALID: dict[str, Any] = {
    "name": "Fuzz line",
    "numbers": ["+14165550100"],
    "provider": "personaplex",
    "overflow": "fal",
    "voice": "NATF2",
    # A template, with the context webhook its values come from (issue 15).
    "prompt": "Greet {{ customer.name | default('the caller') }} ({{ caller_number }}).",
    "limits": {"max_call_seconds": 300, "silence_hangup_seconds": 20},
    "fallback": {"say": "Sorry.", "transfer_to": "+14165550199"},
    "tts_voice": "Polly.Joanna",
    "tts_language": "en-US",
    "recording": True,
    "timezone": "America/Toronto",
    "hours": {"weekly": {"mon": ["09:00-17:00"]}, "holidays": ["2024-12-25"]},
    "closed": {"say": "Closed today, {{ local_weekday }}."},
    "context": {
        "url": "https://crm.example/lookup",
        "timeout_ms": 500,
        "fallback_prompt": "Ask the caller for their name.",
    },
    "answer_within_seconds": 3,
    "webhooks": {"call_ended": "https://crm.example/calls"},
    "record_prompt": False,
}
HOLE = "HOLE_FOR_THE_FUZZED_VALUE"
FIELDS = [
    *VALID,
    "limits.max_call_seconds",
    "fallback.say",
    "fallback.transfer_to",
    "hours.weekly",
    "hours.holidays",
    "closed.say",
    "closed.route_to",
    "context.url",
    "context.timeout_ms",
    "context.fallback_prompt",
    "webhooks.call_ended",
    "unknown",
]
TEMPLATED = ["prompt", "fallback.say", "busy_message", "closed.say", "context.fallback_prompt"]


def alias_bomb(levels: int) -> str:
    """YAML whose value, expanded, holds 9**levels strings (a few hundred bytes on disk)."""
    lines = ['x0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        refs = ",".join([f"*a{level - 1}"] * 9)
        lines.append(f"x{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def document(field: str, value_yaml: str | None, *, bomb_levels: int = 0) -> str:
    """VALID as YAML with ``field`` set to ``value_yaml`` (raw YAML text) or removed."""
    doc = {key: dict(value) if isinstance(value, dict) else value for key, value in VALID.items()}
    parent, _, key = field.rpartition(".")
    target = doc[parent] if parent else doc
    target.pop(key, None)
    if value_yaml is not None:
        target[key] = HOLE
    text = yaml.safe_dump(doc, sort_keys=False, width=1_000_000)
    # A placeholder swapped for raw text, so the value may be any YAML at all
    # (each raw value is one flow-style line: valid at any indentation).
    text = text.replace(HOLE, value_yaml or "")
    return (alias_bomb(bomb_levels) if bomb_levels else "") + text


def dumped(value: Any) -> str:
    return (
        yaml.safe_dump(value, default_flow_style=True, width=1_000_000)
        .strip()
        .removesuffix("\n...")
    )


raw_yaml_values = (
    st.sampled_from(
        [
            "*undefined",
            "!!python/object/apply:os.system ['true']",
            "!!binary 'not base64 @'",
            "!!float 'x'",
            "!!int '0x'",
            "!custom 3",
            "&anchor",
            "2024-13-45",
            "2024-02-30T25:61:00",
            "'\\x00'",
            '"\\ud800"',
            "{? [a] : b}",
            "[*a0]",
            "0o999",
            ".inf",
            "-.inf",
            ".nan",
            "0b" + "1" * 5000,
            "0x" + "f" * 5000,
        ]
    )
    | huge_number_texts
    | st.integers(500, 3000).map(deep_json)
    | st.integers(500, 3000).map(lambda depth: "{a: " * depth + "1" + "}" * depth)
)
values = json_values.map(dumped) | raw_yaml_values | st.none()

# Pieces of Jinja2, well and badly formed: the template checker and the
# renderer must turn any mix into a problem with a line, or a text.
template_pieces = st.sampled_from(
    [
        "{{",
        "}}",
        "{%",
        "%}",
        "{#",
        "#}",
        "{{ caller_number }}",
        "{{ customer.name }}",
        "{{ customer }}",
        "{% if customer %}",
        "{% endif %}",
        "{% for x in customer %}",
        "{% endfor %}",
        "{{ 1 / 0 }}",
        "{{ caller_number | int + 'a' }}",
        "| default('x')",
        "{{ caller_number.__class__ }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ carrier.From }}",
        "{{ contact['x'] }}",
        "{% raw %}",
        "{% endraw %}",
        "{{ local_date|upper }}",
        "{% set a = 1 %}",
        "{{ a }}",
        "\n",
        " ",
        "text",
        "}",
        "{",
        "%",
        "#",
        "'",
        '"',
    ]
)
template_texts = st.lists(template_pieces | st.text(max_size=8), max_size=12).map("".join)


def load(text: str) -> PersonaBook | PersonaError:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            return load_personas(Path(folder))
        except PersonaError as exc:
            error = exc
    assert error.problems
    assert all(problem.path == path for problem in error.problems)
    # Each problem is one readable line, whatever the value was.
    assert all(len(str(problem)) < 1_000 for problem in error.problems), error
    return error


def test_the_unmutated_document_loads() -> None:
    assert isinstance(load(document("unknown", None)), PersonaBook)


@settings(**FUZZ_SETTINGS)
@given(field=st.sampled_from(FIELDS), value=values)
def test_one_field_set_to_anything(field: str, value: str | None) -> None:
    load(document(field, value))


@settings(**FUZZ_SETTINGS)
@given(field=st.sampled_from(FIELDS), levels=st.integers(1, 6))
def test_alias_bombs_in_any_field(field: str, levels: int) -> None:
    load(document(field, f"*a{levels - 1}", bomb_levels=levels))


@settings(**FUZZ_SETTINGS)
@given(field=st.sampled_from(TEMPLATED), text=template_texts)
def test_templates_in_any_text_field(field: str, text: str) -> None:
    load(document(field, json.dumps(text)))


@settings(**FUZZ_SETTINGS)
@given(text=template_texts, customer=json_values)
def test_a_checked_template_renders_or_fails_with_its_own_error(text: str, customer: Any) -> None:
    # What a call does with a template that passed `personas check`: a text, or
    # a TemplateRenderError the call turns into the fallback; never anything else.
    if check_template(text, allow_context=True):
        return
    facts = CallFacts("+14165550111", "+14165550100", "Fuzz", datetime(2024, 4, 12, tzinfo=UTC))
    variables = call_variables(facts, extra=[{"customer": customer}])
    with contextlib.suppress(TemplateRenderError):
        assert isinstance(render(text, variables), str)
    assert isinstance(render_impersonal(text, variables), str)


def test_a_billion_laughs_is_refused_quickly() -> None:
    # 9**9 = 387 million strings once expanded: repr() of it in an error message
    # used to run for many minutes. A subprocess, so a regression fails on the
    # timeout instead of hanging the suite.
    script = (
        "import sys, tempfile\n"
        "from pathlib import Path\n"
        "from phonebridge.personas import PersonaError, load_personas\n"
        "folder = Path(tempfile.mkdtemp())\n"
        "(folder / 'bomb.yaml').write_text(sys.stdin.read())\n"
        "try:\n"
        "    load_personas(folder)\n"
        "except PersonaError as exc:\n"
        "    print(len(exc.problems))\n"
    )
    bomb = document("provider", "*a8", bomb_levels=9)
    bomb += "".join(f"{key}: *a8\n" for key in ("voice_name", "tts_voice", "tts_language"))
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=bomb,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 1


def test_a_lone_surrogate_escape_is_a_problem_with_its_line() -> None:
    # Found by the fuzzer: pydantic could not even render its error for "\ud800"
    # (UnicodeEncodeError out of load_personas), and in a valid field it would
    # have failed later, when the prompt was URL-encoded for the model.
    for field in ("voice", "prompt", "name", "fallback.say"):
        error = load(document(field, '"\\ud800"'))
        assert isinstance(error, PersonaError)
        assert any("lone surrogate" in problem.message for problem in error.problems), error


def test_flow_nesting_is_capped_before_the_scanner_goes_quadratic() -> None:
    error = load(document("name", deep_json(20_000)))
    assert isinstance(error, PersonaError)
    assert "nested deeper than" in str(error)
    assert isinstance(load(document("numbers", '["+14165550100"]')), PersonaBook)


def test_a_number_of_thousands_of_digits_is_a_problem_with_its_line() -> None:
    # Found by the fuzzer: 0xfff... parses into a 6000-digit int, and the
    # "phone numbers must be quoted" message quoting it raised ValueError.
    for field in ("fallback.transfer_to", "numbers", "limits.max_call_seconds"):
        error = load(document(field, "0x" + "f" * 5000))
        assert isinstance(error, PersonaError)
        assert any("characters" in problem.message for problem in error.problems), error


def test_a_long_string_is_quoted_short_in_every_message() -> None:
    # Found by the fuzzer: "'AAAA…' is not an E.164 number" quoted a 70 kB value
    # whole. Every custom message now shows at most a few dozen characters.
    long_value = "A" * 70_000
    for field in ("fallback.transfer_to", "voice", "tts_voice", "provider"):
        error = load(document(field, long_value))
        assert isinstance(error, PersonaError)
        assert all("AAAAAAAAAA" in problem.message for problem in error.problems), error
        assert all(len(problem.message) < 300 for problem in error.problems), error
    voice_error = load(document("voice", "NATF2.pt"))
    assert isinstance(voice_error, PersonaError)
    assert "write 'NATF2.pt' without '.pt' ('NATF2')" in str(voice_error)
