"""What the simulated model says: echo, silence or canned speech. TEST DOUBLE, not a model.

One :meth:`Replier.step` per 80 ms of caller audio consumed (PROTOCOLS.md
§2.3 step 5): it returns exactly 80 ms of agent audio and the text pieces to
send after that step's audio page (§2.4), each with a leading space like a
SentencePiece token whose "▁" was replaced.

Speech mode plays a short spoken greeting, then a reply clip each time the
caller has spoken and paused (or PolarGrid's ``eos`` arrives).

``say`` scripts agent *text* on top of any mode: ``(seconds, text)`` pairs,
each sent as word pieces from the step at that many seconds of input (a test
makes the "agent" say "let me transfer you" to exercise phrase triggers; the
audio is the mode's). The clips are
espeak-ng recordings made by ``simulators/assets/make_assets.sh``.
"""

from __future__ import annotations

import array
import itertools
import math
import wave
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final, Literal

from phonebridge.simulators.personaplex.server_ogg import STEP_BYTES

ReplyMode = Literal["echo", "silence", "speech"]
REPLY_MODES: Final[tuple[ReplyMode, ...]] = ("echo", "silence", "speech")

SILENT_STEP: Final[bytes] = bytes(STEP_BYTES)
ECHO_DELAY_STEPS: Final[int] = 2  # ~160 ms, the real model's delay (§2.4)
ECHO_TEXT_EVERY: Final[int] = 25  # a text piece every ~2 s in echo mode
SPEECH_RMS: Final[float] = 500.0  # caller RMS above this counts as speech
PAUSE_STEPS: Final[int] = 6  # 480 ms of quiet after speech starts a reply
STEP_SECONDS: Final[float] = 0.08  # one model step (§2.3 step 5)

# (asset file, what it says): must match make_assets.sh.
GREETING: Final[tuple[str, str]] = ("greeting.wav", "Hello, thanks for calling. How can I help?")
REPLIES: Final[tuple[tuple[str, str], ...]] = (
    ("reply1.wav", "I see. Tell me more."),
    ("reply2.wav", "Okay, got it."),
)


@dataclass(frozen=True, slots=True)
class Clip:
    pcm: bytes  # 24 kHz mono s16le, padded to whole steps
    text: str

    @property
    def steps(self) -> int:
        return len(self.pcm) // STEP_BYTES


@cache
def load_clip(filename: str, text: str) -> Clip:
    """A packaged WAV asset, checked to be 24 kHz mono 16-bit, padded to whole 80 ms steps."""
    asset = resources.files("phonebridge.simulators").joinpath("assets", filename)
    with asset.open("rb") as raw, wave.open(raw, "rb") as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (24000, 1, 2):
            raise ValueError(f"{filename} must be 24 kHz mono 16-bit")
        pcm = wav.readframes(wav.getnframes())
    pad = -len(pcm) % STEP_BYTES
    return Clip(pcm + bytes(pad), text)


def rms(pcm: bytes) -> float:
    samples = array.array("h", pcm)
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples))


class Replier:
    """Turns each 80 ms of caller audio into 80 ms of agent audio and text pieces."""

    def __init__(self, mode: ReplyMode, *, say: Sequence[tuple[float, str]] = ()) -> None:
        if mode not in REPLY_MODES:
            raise ValueError(f"unknown reply mode {mode!r}")
        self.mode = mode
        self._script = sorted(
            (round(at / STEP_SECONDS), [" " + word for word in text.split()]) for at, text in say
        )
        self._steps = 0
        self._echo: deque[bytes] = deque([SILENT_STEP] * ECHO_DELAY_STEPS)
        self._speaking: deque[tuple[bytes, list[str]]] = deque()
        self._replies = itertools.cycle(REPLIES)
        self._heard_speech = False
        self._quiet_steps = 0
        if mode == "speech":
            self._say(load_clip(*GREETING))

    def step(self, caller_pcm: bytes) -> tuple[bytes, list[str]]:
        pcm, texts = self._step(caller_pcm)
        while self._script and self._script[0][0] <= self._steps:
            texts = texts + self._script.pop(0)[1]
        return pcm, texts

    def _step(self, caller_pcm: bytes) -> tuple[bytes, list[str]]:
        self._steps += 1
        if self.mode == "echo":
            self._echo.append(caller_pcm)
            texts = [" (echo)"] if self._steps % ECHO_TEXT_EVERY == 0 else []
            return self._echo.popleft(), texts
        if self.mode == "silence":
            return SILENT_STEP, []
        self._listen(caller_pcm)
        if self._speaking:
            return self._speaking.popleft()
        return SILENT_STEP, []

    def end_of_turn(self) -> None:
        """PolarGrid ``eos``: the caller finished; start a reply unless already speaking."""
        if self.mode == "speech" and not self._speaking:
            self._heard_speech = False
            self._say(load_clip(*next(self._replies)))

    def _listen(self, caller_pcm: bytes) -> None:
        if rms(caller_pcm) >= SPEECH_RMS:
            self._heard_speech, self._quiet_steps = True, 0
            return
        self._quiet_steps += 1
        if self._heard_speech and self._quiet_steps >= PAUSE_STEPS and not self._speaking:
            self._heard_speech = False
            self._say(load_clip(*next(self._replies)))

    def _say(self, clip: Clip) -> None:
        words = clip.text.split()
        # Spread the words over the clip, each on the step where it roughly starts.
        at: dict[int, list[str]] = defaultdict(list)
        for i, word in enumerate(words):
            at[i * clip.steps // len(words)].append(" " + word)
        for n in range(clip.steps):
            chunk = clip.pcm[n * STEP_BYTES : (n + 1) * STEP_BYTES]
            self._speaking.append((chunk, at.get(n, [])))
