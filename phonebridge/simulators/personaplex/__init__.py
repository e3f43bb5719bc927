"""PersonaPlex server simulator — a TEST DOUBLE for tests and demos, not a model.

See :mod:`phonebridge.simulators.personaplex.server` for what it reproduces
(PROTOCOLS.md §2-§4).
"""

from phonebridge.simulators.personaplex.records import ConnectionRecord
from phonebridge.simulators.personaplex.replies import REPLY_MODES, ReplyMode
from phonebridge.simulators.personaplex.server import FLAVOURS, Flavour, PersonaPlexSimulator

__all__ = [
    "FLAVOURS",
    "REPLY_MODES",
    "ConnectionRecord",
    "Flavour",
    "PersonaPlexSimulator",
    "ReplyMode",
]
