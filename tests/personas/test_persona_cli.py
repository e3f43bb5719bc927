"""``phonebridge personas check [DIR]``."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from phonebridge.personas.cli import register

REPO_PERSONAS = Path(__file__).resolve().parents[2] / "personas"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="phonebridge")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


def test_check_shipped_personas_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["personas", "check", str(REPO_PERSONAS)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["persona", "numbers", "provider", "voice", "name"]
    rows = {line.split()[0]: line for line in out[1:-1]}
    assert set(rows) == {"aerorentals", "casual", "citysan", "shakshuka", "teacher"}
    assert "(default)" in rows["casual"]
    assert "personaplex -> polargrid" in rows["citysan"]
    assert "NATF1" in rows["citysan"]
    assert out[-1] == f"5 personas OK in {REPO_PERSONAS}"


def test_check_prints_file_line_problems_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("name: A\nprovider: fal\nvoice: NATF2\nprompt: hi\ncolour: red\n")
    assert run(["personas", "check", str(tmp_path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}:5: unknown key 'colour' (allowed: answer_within_seconds, busy_message, "
        "carrier, closed, context, default, description, dtmf_to_model, fallback, hours, "
        "limits, name, numbers, outbound, overflow, prompt, provider, record_prompt, recording, "
        "timezone, transfer, tts_language, tts_voice, voice, webhooks)",
        f"1 problem in {tmp_path}",
    ]


def test_directory_defaults_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "solo.yaml").write_text("name: Solo\nprovider: fal\nvoice: NATM3\nprompt: hi\n")
    monkeypatch.setenv("PHONEBRIDGE_PERSONAS", str(tmp_path))
    assert run(["personas", "check"]) == 0
    out = capsys.readouterr().out
    assert "solo" in out
    assert "-" in out.splitlines()[1]  # no numbers


def test_env_flag_cross_checks_provider_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("PERSONAPLEX_URLS", "POLARGRID_API_KEY", "FAL_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PHONEBRIDGE_PUBLIC_URL", "https://bridge.example.com")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "test-token")
    assert run(["personas", "check", "--env", str(REPO_PERSONAS)]) == 1
    out = capsys.readouterr().out
    assert "persona 'citysan'" in out
    assert "PERSONAPLEX_URLS is not set" in out
    assert "test-token" not in out

    monkeypatch.setenv("PERSONAPLEX_URLS", "ws://127.0.0.1:8998")
    monkeypatch.setenv("POLARGRID_API_KEY", "pg_test")
    monkeypatch.setenv("FAL_KEY", "fal-test")
    assert run(["personas", "check", "--env", str(REPO_PERSONAS)]) == 0


def test_env_flag_reports_broken_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PHONEBRIDGE_PUBLIC_URL", raising=False)
    assert run(["personas", "check", "--env", str(REPO_PERSONAS)]) == 1
    assert "PHONEBRIDGE_PUBLIC_URL is not set" in capsys.readouterr().out
