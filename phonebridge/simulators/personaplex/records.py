"""What the PersonaPlex simulator (a TEST DOUBLE) observed, for tests to assert on.

One :class:`ConnectionRecord` per accepted upgrade, mutated by the session
handler as things happen. Times are the event loop's ``time()`` (monotonic).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ConnectionRecord:
    """One connection as the simulator saw it."""

    path: str
    query: dict[str, list[str]]
    subprotocols: tuple[str, ...]
    opened_at: float
    session_started_at: float | None = None  # the one-session lock was taken (§2.5)
    handshake_at: float | None = None  # 0x00 sent
    closed_at: float | None = None
    waited_behind_busy: bool = False  # upgraded while another session held the server
    pre_handshake_messages: int = 0  # read and thrown away during conditioning (§2.3)
    bos_pages: int = 0
    input_messages: int = 0  # 0x01 messages (or fal msgpack messages) after the handshake
    input_samples: int = 0  # decoded 24 kHz samples consumed by model steps
    frames_out: int = 0  # output audio pages (or fal replies), one per 80 ms step
    text_out: list[str] = field(default_factory=list)
    controls: list[str] = field(default_factory=list)  # PolarGrid 0x03 words
    injected_text: list[str] = field(default_factory=list)  # PolarGrid 0x02 from the client
    fal_configs_incomplete: int = 0  # fal messages missing part of the config (§4)
    fal_last_config: dict[str, Any] = field(default_factory=dict)
    max_input_gap: float = 0.0  # seconds between consecutive input messages after 0x00
    last_input_at: float | None = None
    input_pcm: bytearray = field(default_factory=bytearray)
    """The decoded 24 kHz input the model steps consumed, up to ``keep_input_bytes``:
    what the "model" heard, for tests to analyse (spectrum, timing)."""
    keep_input_bytes: int = 0
    end: str = ""  # why the server side ended ("client closed", "second BOS page", ...)
    close_code: int | None = None  # the code the simulator closed with (1006: aborted)

    def note_input(self, now: float) -> None:
        """Count one input message and track the longest gap between two of them."""
        if self.last_input_at is not None:
            self.max_input_gap = max(self.max_input_gap, now - self.last_input_at)
        self.last_input_at = now
        self.input_messages += 1
