"""Read ``personas/*.yaml`` into a :class:`PersonaBook`, or say exactly what is wrong.

Issue 4, "Personas": validation gives ``file:line`` errors for unknown keys,
invalid E.164, a number claimed twice, unknown voice, empty prompt and unknown
provider. Loading is all or nothing: one broken file rejects the whole directory,
so a half-valid set of personas never goes live (the hot reload keeps the
previous book instead, see :mod:`.reload`).

Each file is parsed once into a YAML node tree (which keeps line numbers) and
constructed from that same tree, so pydantic's error locations can be mapped
back onto lines. :func:`load_personas` raises only :class:`PersonaError`,
whatever the bytes in the files.
"""

from __future__ import annotations

import difflib
import re
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .book import PersonaBook, PersonaError, PersonaProblem
from .hours import BusinessHours, Weekly
from .schema import (
    MAX_PROMPT_CHARS,
    PROVIDERS,
    Closed,
    ContextHook,
    Fallback,
    Limits,
    Persona,
    PersonaFile,
    Webhooks,
)
from .shown import shown
from .templates import check_template
from .transfer import AgentPhrases, CallerPhrases, Transfer, Warm

__all__ = ["PersonaError", "PersonaProblem", "load_personas", "persona_files"]

PERSONA_SUFFIXES = (".yaml", ".yml")

# The id ends up in URLs, TwiML <Parameter> values, logs and metric labels.
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

_MODEL_AT: dict[tuple[str, ...], type[BaseModel]] = {
    (): PersonaFile,
    ("limits",): Limits,
    ("fallback",): Fallback,
    ("transfer",): Transfer,
    ("transfer", "warm"): Warm,
    ("transfer", "agent_phrases"): AgentPhrases,
    ("transfer", "caller_phrases"): CallerPhrases,
    ("hours",): BusinessHours,
    ("hours", "weekly"): Weekly,
    ("closed",): Closed,
    ("context",): ContextHook,
    ("webhooks",): Webhooks,
}

Loc = tuple[int | str, ...]


def persona_files(directory: Path) -> list[Path]:
    """The files :func:`load_personas` reads, sorted by name.

    Hidden names are skipped: Kubernetes mounts a ConfigMap as ``..data`` and
    ``..2024_…`` entries beside the real files, and editors leave ``.#name.yaml``
    lock files.
    """
    return sorted(
        entry
        for entry in directory.iterdir()
        if entry.suffix in PERSONA_SUFFIXES and not entry.name.startswith(".") and entry.is_file()
    )


def load_personas(directory: Path) -> PersonaBook:
    """Load every persona file in ``directory``; raise :class:`PersonaError` if any is wrong."""
    try:
        paths = persona_files(directory)
    except OSError as exc:
        raise PersonaError(
            [PersonaProblem(directory, None, f"cannot read the directory: {exc.strerror or exc}")]
        ) from exc
    if not paths:
        raise PersonaError(
            [PersonaProblem(directory, None, "no persona files (*.yaml or *.yml) here")]
        )
    problems: list[PersonaProblem] = []
    loaded: list[_LoadedFile] = []
    for path in paths:
        result = _load_file(path)
        if isinstance(result, _LoadedFile):
            loaded.append(result)
        else:
            problems.extend(result)
    problems.extend(_cross_check(loaded))
    if problems:
        raise PersonaError(problems)
    return PersonaBook.from_personas((item.persona for item in loaded), directory=directory)


@dataclass(frozen=True, slots=True)
class _LoadedFile:
    persona: Persona
    root: yaml.Node

    def line(self, loc: Loc, *, of_key: bool = False) -> int:
        return _line_of(self.root, loc, of_key=of_key)


def _load_file(path: Path) -> _LoadedFile | list[PersonaProblem]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return [PersonaProblem(path, None, f"cannot read the file: {exc.strerror or exc}")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return [PersonaProblem(path, line, "not UTF-8 text: save the file as UTF-8")]
    if not _ID_PATTERN.fullmatch(path.stem):
        return [
            PersonaProblem(
                path,
                None,
                f"file name {path.name!r}: the part before the suffix is the persona id and "
                "may use only letters, digits, '-' and '_' (at most 64)",
            )
        ]
    parsed = _parse_yaml(path, text)
    if isinstance(parsed, list):
        return parsed
    root, data = parsed
    if data is None:
        return [
            PersonaProblem(
                path, 1, "the file is empty: a persona needs name, provider, voice and prompt"
            )
        ]
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else "a single value"
        return [
            PersonaProblem(
                path,
                root.start_mark.line + 1,
                f"expected keys (name: ..., provider: ...) at the top of the file, found {kind}",
            )
        ]
    unusable = _unusable_scalars(path, root)
    if unusable:
        return unusable
    problems = _duplicate_keys(path, root)
    try:
        content = PersonaFile.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems.extend(
            PersonaProblem(path, _line_for_error(root, error), _describe(error))
            for error in errors
            if not _follows_from_an_item(error, errors)
        )
        return sorted(problems, key=lambda problem: problem.line or 0)
    problems.extend(_template_problems(path, root, text, content))
    if problems:
        return problems
    persona = Persona.model_validate({**dict(content), "id": path.stem, "source": path})
    hold = _hold_audio_problem(persona)
    if hold is not None:
        line = _line_of(root, ("transfer", "warm", "hold_audio"))
        return [PersonaProblem(path, line, hold)]
    return _LoadedFile(persona, root)


def _hold_audio_problem(persona: Persona) -> str | None:
    """The warm transfer's hold audio must be a readable mono 16-bit WAV beside the file."""
    transfer = persona.transfer
    if transfer is None or transfer.warm.hold_audio is None:
        return None
    path = persona.source.parent / transfer.warm.hold_audio
    try:
        with wave.open(str(path), "rb") as wav:
            shape = (wav.getnchannels(), wav.getsampwidth())
    except (OSError, EOFError, wave.Error) as exc:
        return f"transfer.warm.hold_audio: cannot read {shown(str(path))} as a WAV file ({exc})"
    if shape != (1, 2):
        return "transfer.warm.hold_audio: the WAV must be mono 16-bit PCM"
    return None


def _templated_texts(content: PersonaFile) -> list[tuple[Loc, str, bool]]:
    """(where, text, may use context values) for every text rendered per call.

    Only the prompt and the fallback are rendered after the context lookup;
    the busy and closed messages are said before it, and the context's own
    fallback prompt is what a failed lookup gets.
    """
    texts: list[tuple[Loc, str, bool]] = [
        (("prompt",), content.prompt, content.context is not None),
        (("fallback", "say"), content.fallback.say, content.context is not None),
        (("busy_message",), content.busy_message, False),
        (("closed", "say"), content.closed.say, False),
    ]
    if content.context is not None and content.context.fallback_prompt is not None:
        texts.append((("context", "fallback_prompt"), content.context.fallback_prompt, False))
    return texts


def _template_problems(
    path: Path, root: yaml.Node, text: str, content: PersonaFile
) -> list[PersonaProblem]:
    problems: list[PersonaProblem] = []
    file_lines = text.splitlines()
    for loc, template, allow_context in _templated_texts(content):
        for problem in check_template(template, allow_context=allow_context):
            line = _template_line(root, loc, file_lines, problem.line, problem.needle)
            problems.append(PersonaProblem(path, line, f"{_dotted(loc)}: {problem.message}"))
    return problems


def _template_line(
    root: yaml.Node, loc: Loc, file_lines: list[str], line_in_template: int, needle: str
) -> int:
    """The file line of a template's line (a ``|`` block keeps lines; others are searched)."""
    node = _node_at(root, loc)
    start = _line_of(root, loc)
    if not isinstance(node, yaml.ScalarNode):
        return start
    first = node.start_mark.line + (1 if node.style in ("|", ">") else 0)
    if node.style == "|":
        return first + line_in_template
    if needle:
        for number in range(first, min(node.end_mark.line + 1, len(file_lines))):
            if needle in file_lines[number]:
                return number + 1
    return first + 1


def _node_at(root: yaml.Node, loc: Loc) -> yaml.Node | None:
    node: yaml.Node | None = root
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            return None
        found = None
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                found = value
        node = found
    return node


MAX_FLOW_NESTING = 32
"""Deepest ``[``/``{`` nesting a persona file may use (a real one uses two)."""


class _PersonaYamlLoader(yaml.SafeLoader):
    """SafeLoader whose impossible dates are YAML errors with a line, not bare ValueErrors.

    It also refuses flow collections nested past :data:`MAX_FLOW_NESTING`:
    PyYAML's scanner re-checks every open level at each token, so a few KB of
    ``[[[[...`` cost seconds (quadratic) before the composer's recursion limit
    ends it; a hot reload would stall on it. Found by tests/fuzz/test_fuzz_personas.py.
    """

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # noqa: N803 - PyYAML's name
        if self.flow_level >= MAX_FLOW_NESTING:
            raise yaml.scanner.ScannerError(
                None, None, f"nested deeper than {MAX_FLOW_NESTING} levels", self.get_mark()
            )
        super().fetch_flow_collection_start(TokenClass)


def _construct_timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> object:
    # ``date: 2024-13-45`` matches the timestamp pattern, then datetime() refuses it.
    try:
        return loader.construct_yaml_timestamp(node)
    except ValueError as exc:
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.value!r} is not a valid date or time ({exc})", node.start_mark
        ) from exc


_PersonaYamlLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def _parse_yaml(path: Path, text: str) -> tuple[yaml.Node, Any] | list[PersonaProblem]:
    try:
        # The reader checks for forbidden characters already in the constructor.
        loader = _PersonaYamlLoader(text)
    except yaml.reader.ReaderError as exc:
        return [_reader_problem(path, text, exc)]
    try:
        root = loader.get_single_node()
        if root is None:
            return yaml.ScalarNode("tag:yaml.org,2002:null", "", loader.get_mark()), None
        return root, loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = exc.problem or exc.context or "invalid YAML"
        return [PersonaProblem(path, line, f"invalid YAML: {reason}")]
    except yaml.reader.ReaderError as exc:
        return [_reader_problem(path, text, exc)]
    except yaml.YAMLError as exc:
        return [PersonaProblem(path, None, f"invalid YAML: {exc}")]
    except (ValueError, OverflowError) as exc:
        # Backstop: PyYAML's constructors may raise plain ValueError for values
        # that match a pattern but do not exist (dates are handled above).
        return [PersonaProblem(path, None, f"invalid YAML value: {exc}")]
    except RecursionError:
        return [PersonaProblem(path, None, "invalid YAML: nested too deeply")]
    finally:
        loader.dispose()


def _reader_problem(path: Path, text: str, exc: yaml.reader.ReaderError) -> PersonaProblem:
    line = text[: exc.position].count("\n") + 1
    character = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return PersonaProblem(
        path, line, f"invalid YAML: the control character U+{character:04X} is not allowed"
    )


def _duplicate_keys(path: Path, root: yaml.Node) -> list[PersonaProblem]:
    """YAML keeps the last of two equal keys without a word: report both instead."""
    problems: list[PersonaProblem] = []
    seen_nodes: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:  # aliases (and self-references) share nodes
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key, value in node.value:
                stack.append(value)
                if not isinstance(key, yaml.ScalarNode):
                    continue
                line = key.start_mark.line + 1
                if key.value in first_line:
                    problems.append(
                        PersonaProblem(
                            path,
                            line,
                            f"key {key.value!r} appears twice (first on line "
                            f"{first_line[key.value]})",
                        )
                    )
                else:
                    first_line[key.value] = line
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return sorted(problems, key=lambda problem: problem.line or 0)


MAX_NUMBER_CHARS = 64
"""Longest integer literal accepted: no persona setting needs more than a handful of digits."""


def _unusable_scalars(path: Path, root: yaml.Node) -> list[PersonaProblem]:
    """Scalars nothing downstream can handle, each with its line.

    - A lone surrogate (a ``"\\ud800"`` escape) is not text: pydantic cannot
      render its own error about it, and in a valid field the prompt's URL or
      the TwiML could not be encoded later.
    - An integer of thousands of digits (``0xfff…`` parses; decimal stops at
      Python's 4300-digit limit) makes any message quoting it raise ValueError.

    Both found by tests/fuzz/test_fuzz_personas.py. Walks nodes, not values:
    aliases share nodes, so an alias bomb costs one visit per node.
    """
    problems: list[PersonaProblem] = []
    seen_nodes: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            message = _scalar_problem(node)
            if message is not None:
                problems.append(PersonaProblem(path, node.start_mark.line + 1, message))
        elif isinstance(node, yaml.MappingNode):
            stack.extend(part for pair in node.value for part in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return sorted(problems, key=lambda problem: problem.line or 0)


def _scalar_problem(node: yaml.ScalarNode) -> str | None:
    text = str(node.value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a \\u escape makes a lone surrogate, which is not text: remove it"
    if node.tag == "tag:yaml.org,2002:int" and len(text) > MAX_NUMBER_CHARS:
        return f"a number of {len(text)} characters: no setting takes one that long"
    return None


def _line_of(root: yaml.Node, loc: Loc, *, of_key: bool = False) -> int:
    """The 1-based line of the value at ``loc`` (or of its key), or of the nearest parent."""
    node = root
    line = root.start_mark.line + 1
    for depth, part in enumerate(loc):
        last = depth == len(loc) - 1
        if isinstance(node, yaml.MappingNode):
            match = None
            for key, value in node.value:  # the last equal key wins, as in YAML
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    match = (key, value)
            if match is None:
                return line
            key, node = match
            line = (key if (of_key and last) else node).start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _follows_from_an_item(error: ErrorDetails, errors: list[ErrorDetails]) -> bool:
    """A list that is "too short" only because one of its items was refused.

    pydantic drops an invalid item and then counts the rest: one bad pattern in
    a one-item list would also read as "at least 1 item", which is not the mistake.
    """
    if error["type"] != "too_short":
        return False
    loc = tuple(error["loc"])
    return any(
        len(other["loc"]) > len(loc) and tuple(other["loc"][: len(loc)]) == loc for other in errors
    )


def _line_for_error(root: yaml.Node, error: ErrorDetails) -> int:
    of_key = error["type"] in ("extra_forbidden", "invalid_key")
    return _line_of(root, tuple(error["loc"]), of_key=of_key)


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _describe(error: ErrorDetails) -> str:
    """pydantic's message, reworded where a persona author needs more than it says."""
    loc = tuple(error["loc"])
    where = _dotted(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = _MODEL_AT.get(tuple(str(part) for part in loc[:-1]), PersonaFile)
        allowed = sorted(model.model_fields)
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
        return f"unknown key {where!r} ({hint})"
    if kind == "invalid_key":
        return f"key {shown(loc[-1])}: keys must be plain text"
    if kind == "tuple_type" and loc == ("numbers",):
        return 'numbers: expected a list of quoted E.164 numbers, e.g. ["+14165550123"]'
    if kind == "model_type" and tuple(str(part) for part in loc) in _MODEL_AT:
        keys = ", ".join(sorted(_MODEL_AT[tuple(str(part) for part in loc)].model_fields))
        return f"{where}: expected keys ({keys})"
    if kind == "missing":
        return f"missing required key {where!r}"
    if kind == "literal_error" and loc and loc[-1] in ("provider", "overflow"):
        return (
            f"{where}: unknown provider {shown(error['input'])} "
            f"(expected one of {', '.join(PROVIDERS)})"
        )
    if kind in ("string_too_long", "too_long") and loc == ("prompt",):
        return (
            f"prompt: {len(str(error['input']))} characters is too long (at most "
            f"{MAX_PROMPT_CHARS}: the prompt travels in a URL query string)"
        )
    if kind == "string_pattern_mismatch" and loc == ("tts_voice",):
        voice = shown(error["input"])
        return f"tts_voice: {voice} is not a Twilio <Say> voice name (e.g. Polly.Joanna)"
    if kind == "string_pattern_mismatch" and loc == ("tts_language",):
        return f"tts_language: {shown(error['input'])} is not a language tag (e.g. en-US)"
    return f"{where}: {error['msg']}" if where else error["msg"]


def _cross_check(loaded: list[_LoadedFile]) -> list[PersonaProblem]:
    """Problems between files: a number claimed twice, two defaults, two files with one id."""
    problems: list[PersonaProblem] = []
    ids: dict[str, Path] = {}
    claims: dict[str, tuple[Path, int]] = {}
    default_at: tuple[Path, int] | None = None
    known = {item.persona.id for item in loaded}
    for item in loaded:
        persona = item.persona
        if persona.id in ids:
            problems.append(
                PersonaProblem(
                    persona.source,
                    None,
                    f"persona id {persona.id!r} is also used by {ids[persona.id]}: rename one",
                )
            )
        ids.setdefault(persona.id, persona.source)
        for index, number in enumerate(persona.numbers):
            here = (persona.source, item.line(("numbers", index)))
            if number in claims:
                first_path, first_line = claims[number]
                problems.append(
                    PersonaProblem(
                        *here, f"number {number} is already claimed at {first_path}:{first_line}"
                    )
                )
            else:
                claims[number] = here
        route = persona.closed.route_to
        if route is not None and (route == persona.id or route not in known):
            problems.append(
                PersonaProblem(
                    persona.source,
                    item.line(("closed", "route_to")),
                    f"closed.route_to: {shown(route)} is "
                    + ("this persona itself" if route == persona.id else "not a persona id")
                    + f" (known: {', '.join(sorted(known))})",
                )
            )
        if persona.default:
            here = (persona.source, item.line(("default",), of_key=True))
            if default_at is None:
                default_at = here
            else:
                problems.append(
                    PersonaProblem(
                        *here,
                        f"a second default persona: {default_at[0]}:{default_at[1]} is "
                        "already the default (only one file may say default: true)",
                    )
                )
    return problems
