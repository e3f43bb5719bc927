"""Loading persona files: every error case points at the exact file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phonebridge.errors import ConfigError
from phonebridge.personas import PersonaBook, PersonaError, load_personas
from phonebridge.personas.loader import persona_files

REPO_PERSONAS = Path(__file__).resolve().parents[2] / "personas"

VALID = """\
name: Test line
numbers: ["+14165550100"]
provider: personaplex
voice: NATF2
prompt: You enjoy having a good conversation.
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_or_error(directory: Path) -> PersonaBook | PersonaError:
    """The book, or the PersonaError; any other exception fails the test."""
    try:
        return load_personas(directory)
    except PersonaError as exc:
        return exc


def problems_of(directory: Path) -> list[str]:
    with pytest.raises(PersonaError) as caught:
        load_personas(directory)
    assert isinstance(caught.value, ConfigError)
    return [str(problem) for problem in caught.value.problems]


def test_valid_file_loads_with_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "line.yaml", VALID)
    book = load_personas(tmp_path)
    (persona,) = book.personas
    assert persona.id == "line"
    assert persona.source == path
    assert persona.numbers == ("+14165550100",)
    assert persona.limits.max_call_seconds == 600
    assert persona.limits.silence_hangup_seconds == 30
    assert persona.fallback.transfer_to is None
    assert persona.recording is True
    assert persona.default is False
    assert book.directory == tmp_path


def test_unknown_key_points_at_the_key_and_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", VALID + "prompts: typo\n")
    assert problems_of(tmp_path) == [f"{path}:6: unknown key 'prompts' (did you mean 'prompt'?)"]


def test_unknown_nested_key(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", VALID + "limits:\n  max_call_seconds: 60\n  hangup: 3\n")
    (problem,) = problems_of(tmp_path)
    assert problem.startswith(f"{path}:8: unknown key 'limits.hangup'")


def test_invalid_e164_points_at_the_item(tmp_path: Path) -> None:
    text = VALID.replace(
        'numbers: ["+14165550100"]', 'numbers:\n  - "+14165550100"\n  - "416-555-0101"'
    )
    path = write(tmp_path, "a.yaml", text)
    (problem,) = problems_of(tmp_path)
    assert problem.startswith(f"{path}:4: numbers[1]: '416-555-0101' is not an E.164 number")


def test_unquoted_number_explains_the_yaml_trap(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", VALID.replace('["+14165550100"]', "[+14165550100]"))
    (problem,) = problems_of(tmp_path)
    assert problem.startswith(
        f'{path}:2: numbers[0]: phone numbers must be quoted strings: write "+14165550100"'
    )


def test_unknown_voice(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", VALID.replace("NATF2", "NATF9"))
    (problem,) = problems_of(tmp_path)
    assert problem.startswith(f"{path}:4: voice: unknown voice 'NATF9' (expected one of NATF0,")


def test_voice_with_pt_suffix_says_drop_it(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", VALID.replace("NATF2", "NATF2.pt"))
    (problem,) = problems_of(tmp_path)
    assert problem.startswith(f"{path}:4: voice: write 'NATF2.pt' without '.pt'")


def test_empty_prompt(tmp_path: Path) -> None:
    text = VALID.replace("prompt: You enjoy having a good conversation.", 'prompt: "  "')
    path = write(tmp_path, "a.yaml", text)
    assert problems_of(tmp_path) == [f"{path}:5: prompt: must not be empty"]


def test_folded_prompt_is_stripped(tmp_path: Path) -> None:
    text = VALID.replace(
        "prompt: You enjoy having a good conversation.", "prompt: >\n  Line one\n  line two\n"
    )
    write(tmp_path, "a.yaml", text)
    assert load_personas(tmp_path).personas[0].prompt == "Line one line two"


def test_overlong_prompt(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", VALID.replace("You enjoy", "x" * 2001 + " You enjoy"))
    (problem,) = problems_of(tmp_path)
    assert problem.startswith(f"{path}:5: prompt: ")
    assert "URL query string" in problem


def test_unknown_provider(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", VALID.replace("personaplex", "openai"))
    assert problems_of(tmp_path) == [
        f"{path}:3: provider: unknown provider 'openai' (expected one of personaplex, "
        "polargrid, fal)"
    ]


def test_overflow_must_differ_from_provider(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", VALID + "overflow: personaplex\n")
    (problem,) = problems_of(tmp_path)
    assert problem.startswith(f"{path}:6: overflow: overflow 'personaplex' is the same provider")


def test_missing_keys_are_each_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "name: Only a name\n")
    assert problems_of(tmp_path) == [
        f"{path}:1: missing required key 'provider'",
        f"{path}:1: missing required key 'voice'",
        f"{path}:1: missing required key 'prompt'",
    ]


def test_several_problems_in_one_file_come_in_line_order(tmp_path: Path) -> None:
    text = VALID.replace("NATF2", "BOB").replace("personaplex", "nope") + "extra: 1\n"
    path = write(tmp_path, "a.yaml", text)
    lines = [problem.split(":")[1] for problem in problems_of(tmp_path)]
    assert lines == ["3", "4", "6"]
    assert all(problem.startswith(str(path)) for problem in problems_of(tmp_path))


def test_duplicate_yaml_key_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", VALID + "voice: NATM1\n")
    assert problems_of(tmp_path) == [f"{path}:6: key 'voice' appears twice (first on line 4)"]


def test_number_claimed_twice_across_files_names_both_places(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", VALID)
    second = write(
        tmp_path,
        "b.yaml",
        VALID.replace(
            'numbers: ["+14165550100"]', 'numbers:\n  - "+14165550177"\n  - "+14165550100"'
        ),
    )
    assert problems_of(tmp_path) == [
        f"{second}:4: number +14165550100 is already claimed at {first}:2"
    ]


def test_number_listed_twice_in_one_file(tmp_path: Path) -> None:
    text = VALID.replace('["+14165550100"]', '["+14165550100", "+14165550100"]')
    path = write(tmp_path, "a.yaml", text)
    assert problems_of(tmp_path) == [
        f"{path}:2: number +14165550100 is already claimed at {path}:2"
    ]


def test_more_than_one_default(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", VALID + "default: true\n")
    second = write(tmp_path, "b.yaml", VALID.replace("0100", "0101") + "\ndefault: true\n")
    assert problems_of(tmp_path) == [
        f"{second}:7: a second default persona: {first}:6 is already the default "
        "(only one file may say default: true)"
    ]


def test_no_personas(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("not a persona")
    assert problems_of(tmp_path) == [f"{tmp_path}: no persona files (*.yaml or *.yml) here"]


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    (problem,) = problems_of(missing)
    assert problem.startswith(f"{missing}: cannot read the directory")


def test_invalid_yaml_has_a_line(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", VALID + "limits: [unclosed\n")
    (problem,) = problems_of(tmp_path)
    assert problem.startswith(f"{path}:7: invalid YAML:")


def test_tab_indentation_has_a_line(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", VALID + "limits:\n\tmax_call_seconds: 5\n")
    (problem,) = problems_of(tmp_path)
    assert problem.startswith(f"{path}:7: invalid YAML:")


def test_impossible_date_is_a_yaml_error_with_a_line(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", VALID + "description: 2024-13-45\n")
    (problem,) = problems_of(tmp_path)
    assert problem.startswith(f"{path}:6: invalid YAML: '2024-13-45' is not a valid date")


def test_empty_file_and_non_mapping(tmp_path: Path) -> None:
    empty = write(tmp_path, "a.yaml", "")
    listed = write(tmp_path, "b.yaml", "\n- name: x\n")
    assert problems_of(tmp_path) == [
        f"{empty}:1: the file is empty: a persona needs name, provider, voice and prompt",
        f"{listed}:2: expected keys (name: ..., provider: ...) at the top of the file, "
        "found a list",
    ]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_bytes(VALID.encode() + b"description: caf\xe9\n")
    assert problems_of(tmp_path) == [f"{path}:6: not UTF-8 text: save the file as UTF-8"]


def test_file_name_must_make_a_safe_id(tmp_path: Path) -> None:
    path = write(tmp_path, "my persona.yaml", VALID)
    (problem,) = problems_of(tmp_path)
    assert problem.startswith(f"{path}: file name 'my persona.yaml'")


def test_yaml_and_yml_with_one_stem_clash(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID)
    second = write(tmp_path, "a.yml", VALID.replace("0100", "0101"))
    (problem,) = problems_of(tmp_path)
    assert problem.startswith(f"{second}: persona id 'a' is also used by")


def test_self_referencing_yaml_is_rejected_not_crashing(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID + "limits: &loop {max_call_seconds: *loop}\n")
    assert problems_of(tmp_path)


def test_hidden_and_other_files_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", VALID)
    write(tmp_path, ".#a.yaml", "broken: [")
    data = tmp_path / "..data"
    data.mkdir()
    write(data, "b.yaml", "broken: [")
    write(tmp_path, "notes.txt", "x")
    assert [path.name for path in persona_files(tmp_path)] == ["a.yml"]
    assert [persona.id for persona in load_personas(tmp_path).personas] == ["a"]


def test_symlinked_files_load_like_a_configmap(tmp_path: Path) -> None:
    data = tmp_path / "..2024_01_01"
    data.mkdir()
    write(data, "a.yaml", VALID)
    (tmp_path / "..data").symlink_to(data.name)
    (tmp_path / "a.yaml").symlink_to(Path("..data") / "a.yaml")
    assert load_personas(tmp_path).personas[0].id == "a"


def test_one_broken_file_rejects_the_whole_directory(tmp_path: Path) -> None:
    write(tmp_path, "good.yaml", VALID)
    write(tmp_path, "bad.yaml", VALID.replace("0100", "0101").replace("NATF2", "X"))
    with pytest.raises(PersonaError) as caught:
        load_personas(tmp_path)
    assert [problem.path.name for problem in caught.value.problems] == ["bad.yaml"]


def test_shipped_personas_load_and_route() -> None:
    book = load_personas(REPO_PERSONAS)
    ids = {persona.id for persona in book.personas}
    assert {"teacher", "citysan", "shakshuka", "aerorentals", "casual"} <= ids
    assert book.default is not None
    assert book.default.id == "casual"
    citysan = book.by_id("citysan")
    assert citysan is not None
    assert "Ayelen Lucero" in citysan.prompt
    for persona in book.personas:
        for number in persona.numbers:
            assert number.startswith("+1416555")
            assert book.for_number(number) is persona


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.binary(max_size=400))
def test_any_bytes_give_a_book_or_a_persona_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(content)
    result = load_or_error(tmp_path)
    if isinstance(result, PersonaError):
        assert result.problems
        assert all(problem.path == path for problem in result.problems)
    else:
        assert isinstance(result, PersonaBook)


_yaml_pieces = st.sampled_from(
    [
        "name: x\n",
        "provider: fal\n",
        "voice: NATF0\n",
        "prompt: hi\n",
        'numbers: ["+1416"]\n',
        "numbers: [+1]\n",
        "limits: {max_call_seconds: -1}\n",
        "limits: 3\n",
        "fallback: [1]\n",
        "default: maybe\n",
        "? [a]\n: b\n",
        "x: &a [*a]\n",
        "y: 2021-02-30\n",
        "z: !!binary '@'\n",
        "w: !!python/object:os.system x\n",
        "<<: {name: y}\n",
        "- a\n",
        "\t\n",
        "'\n",
        "{\n",
        "1: 2\n",
        "null: 3\n",
        "~: 4\n",
        "overflow: fal\n",
        "voice: NATF2.pt\n",
        "%YAML 1.1\n---\n",
        "---\n",
        "...\n",
        "!x\n",
        "a: 1e999\n",
        "b: 0x\n",
        "c: .nan\n",
    ]
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pieces=st.lists(_yaml_pieces, max_size=8))
def test_yamlish_text_gives_a_book_or_a_persona_error(tmp_path: Path, pieces: list[str]) -> None:
    (tmp_path / "fuzz.yaml").write_text("".join(pieces), encoding="utf-8")
    result = load_or_error(tmp_path)
    assert isinstance(result, PersonaBook) or result.problems
