"""``phonebridge personas check [DIR]`` (issue 4, "Personas").

Validates a persona directory the way the server will at start-up and on
reload: every problem as ``file:line: message`` and exit 1, or a summary table
and exit 0. With ``--env`` it also checks the personas against the provider
settings in the environment (a polargrid persona needs POLARGRID_API_KEY, ...).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from phonebridge import config

from .book import PersonaBook, PersonaError
from .loader import load_personas


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``personas check`` to the main CLI's subcommands."""
    personas = subparsers.add_parser("personas", help="work with persona files")
    actions = personas.add_subparsers(dest="personas_command", required=True)
    check = actions.add_parser(
        "check",
        help="validate persona files and show which number reaches which persona",
        description="Validate persona YAML files (exit 1 and print file:line: problems).",
    )
    check.add_argument(
        "directory",
        nargs="?",
        type=Path,
        default=None,
        metavar="DIR",
        help="persona directory (default: $PHONEBRIDGE_PERSONAS or ./personas)",
    )
    check.add_argument(
        "--env",
        action="store_true",
        help="also check provider settings from the environment (keys, server URLs)",
    )
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    stdout = out or sys.stdout
    directory: Path = args.directory or config.personas_directory()
    try:
        book = load_personas(directory)
    except PersonaError as exc:
        for problem in exc.problems:
            print(problem, file=stdout)
        count = len(exc.problems)
        print(f"{count} problem{'s' if count != 1 else ''} in {directory}", file=stdout)
        return 1
    print(summary_table(book), file=stdout)
    if getattr(args, "env", False):
        try:
            settings = config.Settings.from_env()
        except config.SettingsError as exc:
            print(exc, file=stdout)
            return 1
        problems = settings.check_against(book)
        for line in problems:
            print(line, file=stdout)
        if problems:
            return 1
    return 0


def summary_table(book: PersonaBook) -> str:
    """One row per persona: id, numbers, provider (+overflow), voice."""
    header = ("persona", "numbers", "provider", "voice", "name")
    rows: list[Sequence[str]] = [header]
    for persona in book.personas:
        numbers = " ".join([*persona.numbers, *(["(default)"] if persona.default else [])])
        provider = persona.provider + (f" -> {persona.overflow}" if persona.overflow else "")
        rows.append((persona.id, numbers or "-", provider, persona.voice, persona.name))
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    count = len(book.personas)
    lines.append(f"{count} persona{'s' if count != 1 else ''} OK in {book.directory}")
    return "\n".join(lines)
