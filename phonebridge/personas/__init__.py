"""Personas: who answers a dialled number, and how (issue 4, "Personas").

- :mod:`.schema` — what a ``personas/*.yaml`` file may say (:class:`Persona`).
- :mod:`.loader` — :func:`load_personas`: a directory into a :class:`PersonaBook`,
  or a :class:`PersonaError` whose ``problems`` say ``file:line: message``.
- :mod:`.book` — :class:`PersonaBook`: routing by dialled number, default persona.
- :mod:`.reload` — :class:`PersonaStore`: hot reload (polling watch, SIGHUP).
- :mod:`.cli` — ``phonebridge personas check [DIR]``.
"""

from .book import PersonaBook, PersonaError, PersonaProblem
from .loader import load_personas
from .reload import PersonaStore
from .schema import PROVIDERS, Fallback, Limits, Persona, PersonaFile, ProviderName

__all__ = [
    "PROVIDERS",
    "Fallback",
    "Limits",
    "Persona",
    "PersonaBook",
    "PersonaError",
    "PersonaFile",
    "PersonaProblem",
    "PersonaStore",
    "ProviderName",
    "load_personas",
]
