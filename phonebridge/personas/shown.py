"""A persona file's value as an error message may quote it: short, whatever it holds."""

from __future__ import annotations

import reprlib

MAX_SHOWN_CHARS = 60


def _bounded_repr() -> reprlib.Repr:
    shown = reprlib.Repr()
    shown.maxlevel, shown.maxlist, shown.maxtuple, shown.maxdict = 2, 4, 4, 4
    shown.maxstring = shown.maxother = shown.maxlong = 100
    return shown


# reprlib, never repr(): YAML aliases make a value a few lines long in the file
# and exponentially large when printed ("billion laughs": nine aliases of nine
# aliases...), and repr() of it would hang the loader (and the hot reload).
# A plain string can be megabytes too, and one problem is one readable line.
# Both found by tests/fuzz/test_fuzz_personas.py.
_BOUNDED_REPR = _bounded_repr()


def shown(value: object) -> str:
    """``value`` quoted as Python would, cut to at most MAX_SHOWN_CHARS characters."""
    text = _BOUNDED_REPR.repr(value)
    if len(text) <= MAX_SHOWN_CHARS:
        return text
    return text[: MAX_SHOWN_CHARS - 3] + "..."
