"""The set of personas in force, and routing a call to one by its dialled number.

Issue 4, "Personas": a call goes to the persona whose file lists the dialled
number (Twilio's ``To``, E.164, PROTOCOLS.md §1.1); a number no file lists goes to
the default persona, if one file says ``default: true``. A book is immutable:
a reload builds a new one and swaps it in whole (see :mod:`.reload`), so a call
that started on the old book keeps a consistent view.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from phonebridge.errors import ConfigError

from .schema import Persona


@dataclass(frozen=True, slots=True)
class PersonaProblem:
    """One thing wrong with a persona file, where a human can find it."""

    path: Path
    line: int | None  # 1-based; None when the problem is the file or directory as a whole
    message: str

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}: {self.message}"


class PersonaError(ConfigError):
    """The persona files are invalid; ``problems`` says where and why."""

    def __init__(self, problems: Iterable[PersonaProblem]) -> None:
        self.problems: tuple[PersonaProblem, ...] = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


@dataclass(frozen=True, slots=True)
class PersonaBook:
    """Personas by id and by dialled number. Build with :meth:`from_personas`."""

    personas: tuple[Persona, ...]
    numbers: Mapping[str, Persona]
    default: Persona | None
    directory: Path | None = None
    _by_id: Mapping[str, Persona] = field(default_factory=dict, repr=False)

    @classmethod
    def from_personas(
        cls, personas: Iterable[Persona], *, directory: Path | None = None
    ) -> PersonaBook:
        """A book over ``personas``; raises :class:`PersonaError` on clashes.

        The loader reports clashes with file:line first; this check is the
        backstop for personas built in code (tests, the demo).
        """
        ordered = tuple(personas)
        problems: list[PersonaProblem] = []
        by_id: dict[str, Persona] = {}
        numbers: dict[str, Persona] = {}
        default: Persona | None = None
        for persona in ordered:
            if persona.id in by_id:
                problems.append(
                    PersonaProblem(persona.source, None, f"persona id {persona.id!r} is used twice")
                )
            by_id.setdefault(persona.id, persona)
            for number in persona.numbers:
                owner = numbers.setdefault(number, persona)
                if owner is not persona:
                    problems.append(
                        PersonaProblem(
                            persona.source, None, f"number {number} is also claimed by {owner.id!r}"
                        )
                    )
            if persona.default:
                if default is not None:
                    problems.append(
                        PersonaProblem(
                            persona.source, None, f"{default.id!r} is already the default persona"
                        )
                    )
                else:
                    default = persona
        if not ordered:
            problems.append(PersonaProblem(directory or Path("."), None, "no personas"))
        if problems:
            raise PersonaError(problems)
        return cls(
            personas=ordered,
            numbers=MappingProxyType(numbers),
            default=default,
            directory=directory,
            _by_id=MappingProxyType(by_id),
        )

    def for_number(self, to: str, carrier: str = "twilio") -> Persona | None:
        """The persona for a dialled number: an exact E.164 match, else the default.

        ``None`` means nobody answers this number (no match and no default): the
        caller should be rejected, not routed somewhere surprising. A persona
        bound to a carrier answers its numbers only for calls through that
        carrier: the same number arriving through another one is refused, not
        given to the default (it would mean a misconfigured or spoofed route).
        """
        persona = self.numbers.get(to.strip())
        if persona is None:
            default = self.default
            if default is not None and default.carrier not in (None, carrier):
                return None
            return default
        return persona if persona.carrier in (None, carrier) else None

    def by_id(self, persona_id: str) -> Persona | None:
        return self._by_id.get(persona_id)

    def __len__(self) -> int:
        return len(self.personas)
