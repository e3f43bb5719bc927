"""The persona ``transfer:`` section: valid forms load, every mistake is a file:line problem."""

from __future__ import annotations

import textwrap
import wave
from pathlib import Path

import pytest

from phonebridge.personas import PersonaError, load_personas
from phonebridge.personas.transfer import KeyAction, TransferMode

HEAD = """\
name: Test line
numbers: ["+14165550100"]
provider: personaplex
voice: NATF2
prompt: You enjoy having a good conversation.
"""


def write(directory: Path, body: str) -> Path:
    path = directory / "line.yaml"
    path.write_text(HEAD + textwrap.dedent(body), encoding="utf-8")
    return path


def problems(directory: Path) -> list[str]:
    with pytest.raises(PersonaError) as caught:
        load_personas(directory)
    return [str(problem) for problem in caught.value.problems]


def test_a_full_section_loads(tmp_path: Path) -> None:
    write(
        tmp_path,
        """\
        transfer:
          to: "+14165550199"
          mode: warm
          keys:
            0: transfer
            "9": opt_out
            "#": repeat
          agent_phrases:
            patterns: ["transfer you", "connect you (with|to)"]
            confirm_seconds: 2
          warm:
            whisper: "Call for {persona} from {caller}. Press {accept_key}."
            accept_key: "5"
            ring_seconds: 20
            on_no_answer: fallback
        """,
    )
    (persona,) = load_personas(tmp_path).personas
    transfer = persona.transfer
    assert transfer is not None
    assert transfer.to == "+14165550199"
    assert transfer.mode is TransferMode.WARM
    assert transfer.keys == {
        "0": KeyAction.TRANSFER,
        "9": KeyAction.OPT_OUT,
        "#": KeyAction.REPEAT,
    }
    assert transfer.agent_phrases is not None
    assert transfer.agent_phrases.confirm_seconds == 2
    assert transfer.warm.accept_key == "5"
    assert transfer.warm.on_no_answer == "fallback"


def test_no_section_means_no_transfer(tmp_path: Path) -> None:
    write(tmp_path, "")
    (persona,) = load_personas(tmp_path).personas
    assert persona.transfer is None


def test_sip_target_is_accepted(tmp_path: Path) -> None:
    write(tmp_path, 'transfer:\n  to: "sip:desk@pbx.example.com:5060"\n  keys: {"0": transfer}\n')
    (persona,) = load_personas(tmp_path).personas
    assert persona.transfer is not None
    assert persona.transfer.to == "sip:desk@pbx.example.com:5060"


@pytest.mark.parametrize(
    ("body", "line", "needle"),
    [
        ('transfer:\n  to: "+1 416 555"\n', 7, "neither an E.164 number"),
        ("transfer:\n  to: +14165550199\n", 7, "must be quoted"),
        ('transfer:\n  keys: {"0": transfer}\n', 7, "'to' is not set"),
        ('transfer:\n  to: "+14165550199"\n  keys: {"A": transfer}\n', 8, "not a keypad key"),
        ('transfer:\n  to: "+14165550199"\n  keys: {"0": dance}\n', 8, "transfer"),
        (
            'transfer:\n  to: "+14165550199"\n  agent_phrases:\n    patterns: ["transfer (you"]\n',
            9,
            "not a regular expression",
        ),
        (
            'transfer:\n  to: "+14165550199"\n  agent_phrases:\n    patterns: ["(human)?"]\n',
            9,
            "matches empty text",
        ),
        (
            'transfer:\n  to: "+14165550199"\n  agent_phrases:\n    patterns: []\n',
            9,
            "at least 1",
        ),
        (
            'transfer:\n  to: "+14165550199"\n  warm:\n    whisper: "Hi {name}"\n',
            9,
            "unknown placeholder {name}",
        ),
        ('transfer:\n  to: "+14165550199"\n  mode: lukewarm\n', 8, "cold"),
        ('transfer:\n  to: "+14165550199"\n  warm:\n    ring_secs: 5\n', 9, "ring_seconds"),
    ],
)
def test_mistakes_are_reported_with_their_line(
    tmp_path: Path, body: str, line: int, needle: str
) -> None:
    path = write(tmp_path, body)
    (problem,) = problems(tmp_path)
    assert problem.startswith(f"{path}:{line}: "), problem
    assert needle in problem


def test_hold_audio_must_be_a_mono_16_bit_wav_beside_the_file(tmp_path: Path) -> None:
    body = 'transfer:\n  to: "+14165550199"\n  mode: warm\n  warm:\n    hold_audio: hold.wav\n'
    path = write(tmp_path, body)
    (problem,) = problems(tmp_path)
    assert problem.startswith(f"{path}:10: ")
    assert "cannot read" in problem
    with wave.open(str(tmp_path / "hold.wav"), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(bytes(400))
    assert "mono 16-bit" in problems(tmp_path)[0]
    with wave.open(str(tmp_path / "hold.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(bytes(400))
    (persona,) = load_personas(tmp_path).personas
    assert persona.transfer is not None
    assert persona.transfer.warm.hold_audio == "hold.wav"
