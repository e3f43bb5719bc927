"""Settings from the environment: defaults, validation messages, derived URLs, secrets."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from phonebridge.config import (
    DIALLING_CARRIERS,
    KNOWN_VARIABLES,
    CarrierSettings,
    LogFormat,
    Settings,
    SettingsError,
    StreamSignaturePolicy,
    personas_directory,
    redact_url,
    unknown_variables,
)
from phonebridge.errors import ConfigError
from phonebridge.models.base import SessionRequest
from phonebridge.personas import Persona, PersonaBook
from phonebridge.service import model_factories
from phonebridge.telephony.telnyx.signature import public_key_text

MINIMAL = {
    "PHONEBRIDGE_PUBLIC_URL": "https://bridge.example.com",
    "TWILIO_AUTH_TOKEN": "auth-token-secret",
}


def settings_from(**env: str) -> Settings:
    return Settings.from_env(MINIMAL | env)


def problems_from(env: dict[str, str], **overrides: Any) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env, **overrides)
    assert isinstance(caught.value, ConfigError)
    return list(caught.value.problems)


def test_defaults() -> None:
    settings = Settings.from_env(MINIMAL)
    assert settings.personas_dir == Path("personas")
    assert settings.data_dir == Path("data")
    assert settings.effective_database_url == "sqlite+aiosqlite:///data/phonebridge.db"
    assert settings.personaplex_urls == ()
    assert settings.personaplex_handshake_timeout == 30.0
    assert settings.polargrid_region == "yto-01"
    assert settings.max_calls == 50
    assert settings.stream_signature is StreamSignaturePolicy.STRICT
    assert settings.effective_stream_signature is StreamSignaturePolicy.STRICT
    assert settings.pending_timeout == 15.0
    assert settings.log_format is LogFormat.TEXT
    assert settings.log_level == "INFO"
    assert settings.retention_days is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.twilio_auth_token == SecretStr("auth-token-secret")


def test_everything_from_the_environment() -> None:
    settings = settings_from(
        TWILIO_ACCOUNT_SID="AC" + "0123456789abcdef" * 2,
        PHONEBRIDGE_PERSONAS="/etc/phonebridge/personas",
        PHONEBRIDGE_DATA="/var/lib/phonebridge",
        DATABASE_URL="postgresql+asyncpg://pb:hunter2@db/pb",
        PERSONAPLEX_URLS=" ws://gpu-1:8998 , wss://gpu-2.internal/api/chat,",
        PERSONAPLEX_HANDSHAKE_TIMEOUT="12.5",
        POLARGRID_API_KEY="pg_abc",
        POLARGRID_REGION="nyc-02",
        FAL_KEY="fal-key",
        PHONEBRIDGE_MAX_CALLS="8",
        PHONEBRIDGE_STREAM_SIGNATURE="LOG",
        PHONEBRIDGE_PENDING_TIMEOUT="5",
        PHONEBRIDGE_DASHBOARD_TOKEN="dash",
        PHONEBRIDGE_LOG_FORMAT="json",
        PHONEBRIDGE_LOG_LEVEL="debug",
        PHONEBRIDGE_TRANSCRIBE_URL="https://asr.example.com/v1/audio/transcriptions",
        PHONEBRIDGE_TRANSCRIBE_KEY="asr-key",
        PHONEBRIDGE_TRANSCRIBE_MODEL="whisper-1",
        PHONEBRIDGE_RETENTION_DAYS="30",
        PHONEBRIDGE_HOST="0.0.0.0",
        PHONEBRIDGE_PORT="9000",
    )
    assert settings.personas_dir == Path("/etc/phonebridge/personas")
    assert settings.effective_database_url == "postgresql+asyncpg://pb:hunter2@db/pb"
    assert settings.personaplex_urls == ("ws://gpu-1:8998", "wss://gpu-2.internal/api/chat")
    assert settings.personaplex_handshake_timeout == 12.5
    assert settings.polargrid_region == "nyc-02"
    assert settings.max_calls == 8
    assert settings.stream_signature is StreamSignaturePolicy.LOG
    assert settings.log_format is LogFormat.JSON
    assert settings.log_level == "DEBUG"
    assert settings.retention_days == 30
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert settings.fal_key is not None
    assert settings.fal_key.get_secret_value() == "fal-key"


def test_default_database_follows_the_data_dir() -> None:
    settings = settings_from(PHONEBRIDGE_DATA="/srv/pb")
    assert settings.effective_database_url == "sqlite+aiosqlite:////srv/pb/phonebridge.db"
    moved = settings.override(data_dir="/mnt/other")
    assert moved.effective_database_url == "sqlite+aiosqlite:////mnt/other/phonebridge.db"


def test_empty_variables_count_as_unset() -> None:
    settings = settings_from(PHONEBRIDGE_PORT="", FAL_KEY="  ", PHONEBRIDGE_PERSONAS="")
    assert settings.port == 8080
    assert settings.fal_key is None
    assert settings.personas_dir == Path("personas")


def test_nothing_set_says_what_to_set() -> None:
    problems = problems_from({})
    assert len(problems) == 2
    assert problems[0].startswith("PHONEBRIDGE_PUBLIC_URL is not set: set it to the https://")
    assert problems[1].startswith("TWILIO_AUTH_TOKEN is not set")
    assert "PHONEBRIDGE_INSECURE_SKIP_TWILIO_SIGNATURE=1" in problems[1]


def test_all_problems_are_reported_at_once_in_the_message() -> None:
    env = MINIMAL | {
        "PHONEBRIDGE_PORT": "eighty",
        "PHONEBRIDGE_MAX_CALLS": "0",
        "PHONEBRIDGE_STREAM_SIGNATURE": "maybe",
        "PERSONAPLEX_URLS": "http://gpu-1:8998",
    }
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    assert message.startswith("invalid settings:\n  - ")
    for fragment in (
        "PHONEBRIDGE_PORT must be a whole number, not 'eighty'",
        "PHONEBRIDGE_MAX_CALLS must be at least 1",
        "PHONEBRIDGE_STREAM_SIGNATURE must be strict | log | off, not 'maybe'",
        "PERSONAPLEX_URLS: 'http://gpu-1:8998' is not a ws:// or wss:// URL",
    ):
        assert fragment in message


def test_skip_signature_switch_allows_no_token_and_turns_stream_check_off() -> None:
    settings = Settings.from_env(
        {
            "PHONEBRIDGE_PUBLIC_URL": "https://bridge.example.com",
            "PHONEBRIDGE_INSECURE_SKIP_TWILIO_SIGNATURE": "1",
        }
    )
    assert settings.skip_twilio_signature is True
    assert settings.twilio_auth_token is None
    assert settings.effective_stream_signature is StreamSignaturePolicy.OFF


@pytest.mark.parametrize(
    ("public_url", "stream_url", "voice_url"),
    [
        (
            "https://bridge.example.com",
            "wss://bridge.example.com/twilio/media",
            "https://bridge.example.com/twilio/voice",
        ),
        (
            "https://bridge.example.com/",
            "wss://bridge.example.com/twilio/media",
            "https://bridge.example.com/twilio/voice",
        ),
        (
            "https://example.com:8443/phone/",
            "wss://example.com:8443/phone/twilio/media",
            "https://example.com:8443/phone/twilio/voice",
        ),
        (
            "https://127.0.0.1:5000",
            "wss://127.0.0.1:5000/twilio/media",
            "https://127.0.0.1:5000/twilio/voice",
        ),
    ],
)
def test_derived_urls(public_url: str, stream_url: str, voice_url: str) -> None:
    settings = settings_from(PHONEBRIDGE_PUBLIC_URL=public_url)
    assert not settings.public_url.endswith("/")
    assert settings.webhook_url("/") == settings.public_url + "/"
    assert settings.stream_url == stream_url
    assert settings.webhook_url("/twilio/voice") == voice_url
    assert settings.webhook_url("twilio/voice") == voice_url


@pytest.mark.parametrize(
    ("public_url", "fragment"),
    [
        ("bridge.example.com", "is not an http(s) URL with a host"),
        ("ftp://bridge.example.com", "is not an http(s) URL with a host"),
        ("https://", "is not an http(s) URL with a host"),
        ("https://bridge.example.com/?a=1", "must be a plain base URL"),
        ("https://user:pw@bridge.example.com", "must be a plain base URL"),
        ("https://bridge.example.com:99999", "has an invalid port"),
        ("http://bridge.example.com", "must be an absolute wss:// URL"),
    ],
)
def test_bad_public_urls(public_url: str, fragment: str) -> None:
    (problem,) = problems_from(MINIMAL | {"PHONEBRIDGE_PUBLIC_URL": public_url})
    assert problem.startswith("PHONEBRIDGE_PUBLIC_URL ")
    assert fragment in problem
    assert "pw" not in problem


@pytest.mark.parametrize(
    "public_url", ["http://127.0.0.1:8080", "http://localhost:8080", "http://devbox.lan:8080"]
)
def test_an_http_public_url_is_refused_because_twilio_refuses_its_ws_stream(
    public_url: str,
) -> None:
    """One rule with the TwiML builder: start-up refuses what every webhook would refuse."""
    (problem,) = problems_from(MINIMAL | {"PHONEBRIDGE_PUBLIC_URL": public_url})
    assert "\n" not in problem
    assert problem.startswith(f"PHONEBRIDGE_PUBLIC_URL {public_url!r} cannot be used")
    assert "wss://" in problem
    assert "https://" in problem  # what to set instead


def test_start_up_and_the_twiml_builder_apply_the_same_stream_url_rule() -> None:
    from phonebridge.errors import LocalProtocolError  # noqa: PLC0415
    from phonebridge.telephony.twilio import twiml  # noqa: PLC0415

    for public_url in ("https://bridge.example.com", "https://[::1]:8443/pb"):
        settings = settings_from(PHONEBRIDGE_PUBLIC_URL=public_url)
        assert "<Stream" in twiml.connect_stream(settings.stream_url, settings.action_url, {})
    with pytest.raises(LocalProtocolError) as refused:
        twiml.connect_stream("ws://127.0.0.1:8080/twilio/media", "https://h.example/a", {})
    (problem,) = problems_from(MINIMAL | {"PHONEBRIDGE_PUBLIC_URL": "http://127.0.0.1:8080"})
    assert str(refused.value) in problem


# -- replicas -----------------------------------------------------------------------------


def test_a_replica_writes_its_stream_and_action_under_its_id() -> None:
    settings = settings_from(PHONEBRIDGE_REPLICA_ID="phonebridge-2")
    assert settings.effective_replica_id == "phonebridge-2"
    assert settings.sticky_prefix == "/twilio/r/phonebridge-2"
    assert settings.stream_url == "wss://bridge.example.com/twilio/r/phonebridge-2/media"
    assert settings.action_url == "https://bridge.example.com/twilio/r/phonebridge-2/stream-ended"
    assert settings_from(PHONEBRIDGE_REPLICA_ID="0").stream_url.endswith("/twilio/r/0/media")


def test_no_replica_id_keeps_the_single_process_paths() -> None:
    settings = settings_from()
    assert settings.effective_replica_id is None
    assert settings.stream_url == "wss://bridge.example.com/twilio/media"
    assert settings.action_url == "https://bridge.example.com/twilio/stream-ended"


def test_a_worker_is_a_replica_on_one_host() -> None:
    assert settings_from(PHONEBRIDGE_WORKER="1").effective_replica_id == "w1"
    worker = settings_from(PHONEBRIDGE_WORKER="1", PHONEBRIDGE_REPLICA_ID="gpu-host-a")
    assert worker.effective_replica_id == "gpu-host-a-w1"
    assert worker.stream_url == "wss://bridge.example.com/twilio/r/gpu-host-a-w1/media"


@pytest.mark.parametrize(
    ("replica", "fragment"),
    [
        ("Phonebridge-2", "is not a DNS label"),
        ("pod_2", "is not a DNS label"),
        ("-2", "is not a DNS label"),
        ("2-", "is not a DNS label"),
        ("a/b", "is not a DNS label"),
        ("a" * 64, "is too long"),
    ],
)
def test_bad_replica_ids(replica: str, fragment: str) -> None:
    (problem,) = problems_from(MINIMAL | {"PHONEBRIDGE_REPLICA_ID": replica})
    assert problem.startswith("PHONEBRIDGE_REPLICA_ID")
    assert fragment in problem


def test_a_replica_id_too_long_for_its_workers_is_refused() -> None:
    env = MINIMAL | {"PHONEBRIDGE_REPLICA_ID": "a" * 62, "PHONEBRIDGE_WORKER": "3"}
    (problem,) = problems_from(env)
    assert "too long" in problem


@pytest.mark.parametrize(
    ("urls", "fragment"),
    [
        ("gpu-1:8998", "is not a ws:// or wss:// URL"),
        ("ws://gpu-1:8998/api/chat?text_prompt=x", "must not carry a query string"),
        ("ws://gpu-1:8998,ws://GPU-1:8998/", "twice: each server takes one call at a time"),
        ("ws://gpu-1:0x", "has an invalid port"),
    ],
)
def test_bad_personaplex_urls(urls: str, fragment: str) -> None:
    (problem,) = problems_from(MINIMAL | {"PERSONAPLEX_URLS": urls})
    assert problem.startswith("PERSONAPLEX_URLS")
    assert fragment in problem


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"TWILIO_ACCOUNT_SID": "SK123"}, "is not an account SID"),
        ({"TWILIO_API_URL": "http://api.example.com"}, "uses http://: use https://"),
        ({"TWILIO_API_URL": "http://127.0.0.1:9"}, None),
        ({"POLARGRID_REGION": "evil.com/x"}, "is not a region id"),
        ({"POLARGRID_REGION": "yto-0\u0661"}, "is not a region id"),
        ({"PERSONAPLEX_HANDSHAKE_TIMEOUT": "0"}, "must be more than 0 seconds"),
        ({"PERSONAPLEX_HANDSHAKE_TIMEOUT": "soon"}, "must be a number of seconds"),
        ({"PHONEBRIDGE_PENDING_TIMEOUT": "-1"}, "must be more than 0 seconds"),
        ({"PHONEBRIDGE_PORT": "70000"}, "is not a TCP port"),
        ({"PHONEBRIDGE_HOST": " "}, None),  # blank = unset = default
        ({"PHONEBRIDGE_RETENTION_DAYS": "0"}, "must be at least 1"),
        ({"PHONEBRIDGE_LOG_FORMAT": "xml"}, "must be text | json"),
        ({"PHONEBRIDGE_LOG_LEVEL": "loud"}, "must be DEBUG, INFO"),
        ({"PHONEBRIDGE_INSECURE_SKIP_TWILIO_SIGNATURE": "sure"}, "must be 1 or 0"),
        ({"PHONEBRIDGE_TRANSCRIBE_KEY": "k"}, "PHONEBRIDGE_TRANSCRIBE_URL is not"),
        ({"PHONEBRIDGE_TRANSCRIBE_URL": "asr.local"}, "is not an http(s) URL"),
        ({"DATABASE_URL": "phonebridge.db"}, "DATABASE_URL is not a URL"),
        ({"PHONEBRIDGE_ANSWER_WITHIN_SECONDS": "12"}, "must be 0 (answer at once) to 10"),
        ({"PHONEBRIDGE_RECORDING_LINK_SECONDS": "0"}, "must be more than 0 seconds"),
        (
            {"PHONEBRIDGE_CALL_ENDED_WEBHOOK_URL": "https://crm.example/calls"},
            "PHONEBRIDGE_WEBHOOK_SECRET is not: call summaries are always signed",
        ),
        (
            {
                "PHONEBRIDGE_CALL_ENDED_WEBHOOK_URL": "crm.example",
                "PHONEBRIDGE_WEBHOOK_SECRET": "s",
            },
            "is not an http(s) URL",
        ),
    ],
)
def test_each_setting_is_validated(env: dict[str, str], fragment: str | None) -> None:
    if fragment is None:
        settings_from(**env)
        return
    (problem,) = problems_from(MINIMAL | env)
    assert fragment in problem


def test_secrets_never_appear_in_repr() -> None:
    settings = settings_from(
        POLARGRID_API_KEY="pg_supersecret",
        FAL_KEY="fal-supersecret",
        PHONEBRIDGE_DASHBOARD_TOKEN="dash-supersecret",
        PHONEBRIDGE_TRANSCRIBE_URL="https://asr.example.com",
        PHONEBRIDGE_TRANSCRIBE_KEY="asr-supersecret",
        DATABASE_URL="postgresql+asyncpg://pb:db-supersecret@db/pb",
        PERSONAPLEX_URLS="wss://user:ws-supersecret@gpu-1/api/chat",
    )
    for text in (repr(settings), str(settings), f"{settings}"):
        assert "supersecret" not in text
        assert "auth-token-secret" not in text
        assert "gpu-1" in text
        assert "public_url='https://bridge.example.com'" in text


def test_from_env_applies_cli_flags_before_validating() -> None:
    settings = Settings.from_env(
        {"PHONEBRIDGE_PORT": "9000"},
        public_url="https://127.0.0.1:4321",
        twilio_auth_token="flag-token",
        port=None,  # flag not given: the environment's value stays
        personas_dir="elsewhere",
    )
    assert settings.port == 9000
    assert settings.public_url == "https://127.0.0.1:4321"
    assert settings.twilio_auth_token == SecretStr("flag-token")
    assert settings.personas_dir == Path("elsewhere")


def test_override_revalidates_and_types_values() -> None:
    settings = Settings.from_env(MINIMAL)
    changed = settings.override(
        port=0,
        stream_signature="off",
        personaplex_urls="ws://127.0.0.1:1,ws://127.0.0.1:2",
        fal_key="k",
        host=None,
    )
    assert changed.port == 0
    assert changed.stream_signature is StreamSignaturePolicy.OFF
    assert changed.personaplex_urls == ("ws://127.0.0.1:1", "ws://127.0.0.1:2")
    assert changed.fal_key == SecretStr("k")
    assert changed.host == "127.0.0.1"
    assert settings.port == 8080  # the original is untouched (frozen)
    with pytest.raises(SettingsError, match="PHONEBRIDGE_PORT -1 is not a TCP port"):
        settings.override(port=-1)
    with pytest.raises(SettingsError, match="stream_signature must be"):
        settings.override(stream_signature="sometimes")


def test_settings_are_frozen() -> None:
    settings = Settings.from_env(MINIMAL)
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def test_personas_directory_alone() -> None:
    assert personas_directory({}) == Path("personas")
    assert personas_directory({"PHONEBRIDGE_PERSONAS": "/p"}) == Path("/p")


def test_unknown_variables_are_flagged_with_a_suggestion() -> None:
    env = {"PHONEBRIDGE_PUBLIC_ULR": "x", "PHONEBRIDGE_PORT": "1", "HOME": "/root"}
    assert unknown_variables(env) == [
        "PHONEBRIDGE_PUBLIC_ULR is not a phonebridge setting (did you mean PHONEBRIDGE_PUBLIC_URL?)"
    ]


def test_every_known_variable_is_read_by_from_env() -> None:
    # A variable in the list that from_env ignored would pass the typo check silently.
    readers = (
        inspect.getsource(Settings.from_env)
        # The further carriers' variables are read by CarrierSettings.read, which from_env calls.
        + inspect.getsource(CarrierSettings.read)
    )
    assert "CarrierSettings.read(reader)" in readers
    for name in KNOWN_VARIABLES - {"PHONEBRIDGE_PERSONAS"}:
        assert f'"{name}"' in readers


def test_redact_url() -> None:
    assert redact_url("wss://u:p@h/x?token=abc&v=1") == "wss://u:***@h/x?token=***&v=1"
    assert redact_url("ws://h:1/x") == "ws://h:1/x"


@given(st.text(max_size=30))
def test_arbitrary_public_urls_give_settings_or_a_settings_error(url: str) -> None:
    outcome: Settings | SettingsError
    try:
        outcome = Settings.from_env(MINIMAL | {"PHONEBRIDGE_PUBLIC_URL": url})
    except SettingsError as exc:
        outcome = exc
    if isinstance(outcome, SettingsError):
        assert outcome.problems
    else:
        assert outcome.stream_url.startswith(("wss://", "ws://"))
        assert "?" not in outcome.stream_url
        assert not any(character.isspace() for character in outcome.stream_url)


def book(*personas: dict[str, Any]) -> PersonaBook:
    base = {"name": "P", "voice": "NATF2", "prompt": "Hi"}
    return PersonaBook.from_personas(
        Persona.model_validate(base | {"id": f"p{i}", "source": Path(f"p{i}.yaml")} | fields)
        for i, fields in enumerate(personas)
    )


def test_check_against_personas() -> None:
    bare = Settings.from_env(MINIMAL)
    personas = book(
        {"provider": "polargrid"},
        {"provider": "fal"},
        {"provider": "personaplex"},
        {"provider": "personaplex", "overflow": "polargrid"},
    )
    assert bare.check_against(personas) == [
        "persona 'p0' (p0.yaml) uses provider polargrid but POLARGRID_API_KEY is not set",
        "persona 'p1' (p1.yaml) uses provider fal but FAL_KEY is not set",
        "persona 'p2' (p2.yaml) uses provider personaplex but PERSONAPLEX_URLS is not set: "
        "set it, or add an overflow provider",
        "persona 'p3' (p3.yaml) overflows to polargrid but POLARGRID_API_KEY is not set: "
        "set it, or remove overflow",
    ]
    # A self-hosted persona without servers is fine when its overflow is configured.
    with_polargrid = bare.override(polargrid_api_key="pg_x")
    assert (
        with_polargrid.check_against(book({"provider": "personaplex", "overflow": "polargrid"}))
        == []
    )
    full = bare.override(
        polargrid_api_key="pg_x", fal_key="f", personaplex_urls=("ws://127.0.0.1:1",)
    )
    assert full.check_against(personas) == []


def test_a_warm_transfer_needs_twilio_call_control() -> None:
    warm = book(
        {
            "provider": "fal",
            "transfer": {"to": "+14165550199", "mode": "warm", "keys": {"0": "transfer"}},
        }
    )
    bare = Settings.from_env(MINIMAL | {"FAL_KEY": "f"})
    (problem,) = bare.check_against(warm)
    assert "warm transfer" in problem
    assert "TWILIO_ACCOUNT_SID" in problem
    with_sid = bare.override(twilio_account_sid="AC" + "0123456789abcdef" * 2)
    assert with_sid.check_against(warm) == []


def test_personas_that_call_webhooks_need_the_secret() -> None:
    personas = book(
        {"provider": "fal", "context": {"url": "https://crm.example/lookup"}},
        {"provider": "fal", "webhooks": {"call_ended": "https://crm.example/calls"}},
        {"provider": "fal"},
    )
    unsigned = Settings.from_env(MINIMAL).override(fal_key="f")
    assert unsigned.check_against(personas) == [
        f"persona 'p{i}' (p{i}.yaml) calls webhooks (context or webhooks.call_ended) but "
        "PHONEBRIDGE_WEBHOOK_SECRET is not set: every webhook is signed with it"
        for i in (0, 1)
    ]
    assert unsigned.override(webhook_secret="s").check_against(personas) == []


@pytest.mark.parametrize(
    "public_url",
    [
        "https://bri dge.example.com",
        "https://bridge.example.com/a b",
        "https://exa\nmple.com",
        'https://example.com/"><x',
        "https://exa_mple.com",
    ],
)
def test_public_url_with_odd_characters_is_rejected(public_url: str) -> None:
    (problem,) = problems_from(MINIMAL | {"PHONEBRIDGE_PUBLIC_URL": public_url})
    assert "is not an http(s) URL with a host" in problem


def test_ipv6_public_url() -> None:
    settings = settings_from(PHONEBRIDGE_PUBLIC_URL="https://[::1]:8080")
    assert settings.stream_url == "wss://[::1]:8080/twilio/media"


# -- toll-fraud guard -------------------------------------------------------------------


def test_toll_fraud_limits_default_to_sane_values() -> None:
    settings = Settings.from_env(MINIMAL)
    assert settings.caller_max_calls_per_hour == 10
    assert settings.caller_max_concurrent == 2
    assert settings.max_new_calls_per_minute == 60


def test_toll_fraud_limits_from_the_environment_and_zero_turns_them_off() -> None:
    settings = settings_from(
        PHONEBRIDGE_CALLER_MAX_CALLS_PER_HOUR="3",
        PHONEBRIDGE_CALLER_MAX_CONCURRENT="0",
        PHONEBRIDGE_MAX_NEW_CALLS_PER_MINUTE="0",
    )
    assert settings.caller_max_calls_per_hour == 3
    assert settings.caller_max_concurrent == 0
    assert settings.max_new_calls_per_minute == 0
    # Empty means unset (a compose file's FOO=): the default, not "off".
    assert settings_from(PHONEBRIDGE_CALLER_MAX_CONCURRENT="").caller_max_concurrent == 2


def test_toll_fraud_limits_are_validated_together() -> None:
    problems = problems_from(
        MINIMAL
        | {
            "PHONEBRIDGE_CALLER_MAX_CALLS_PER_HOUR": "-1",
            "PHONEBRIDGE_CALLER_MAX_CONCURRENT": "two",
            "PHONEBRIDGE_MAX_NEW_CALLS_PER_MINUTE": "-5",
        }
    )
    text = "\n".join(problems)
    assert "PHONEBRIDGE_CALLER_MAX_CALLS_PER_HOUR must be 0 (off) or more" in text
    assert "PHONEBRIDGE_CALLER_MAX_CONCURRENT must be a whole number" in text
    assert "PHONEBRIDGE_MAX_NEW_CALLS_PER_MINUTE must be 0 (off) or more" in text
    assert unknown_variables({"PHONEBRIDGE_CALLER_MAX_CONCURRENT": "1"}) == []


# -- hosted endpoints: POLARGRID_BASE_URL, FAL_BASE_URL ----------------------------------

HOSTED_KEYS = {"POLARGRID_API_KEY": "pg_live_0123456789", "FAL_KEY": "fal-live-0123456789"}


def test_hosted_endpoints_default_to_the_providers_own() -> None:
    settings = Settings.from_env(MINIMAL | HOSTED_KEYS)
    assert settings.polargrid_base_url is None  # derived from POLARGRID_REGION
    assert settings.fal_base_url is None  # wss://fal.run


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("wss://pg.internal.example.net", True),
        ("wss://egress-proxy.example.net:8443/polargrid/", True),
        ("ws://127.0.0.1:9001", True),
        ("ws://localhost:9001", True),
        ("ws://[::1]:9001", True),
        ("ws://127.8.0.1:9001", True),  # all of 127/8 is loopback
        ("ws://pg.internal.example.net", False),
        ("ws://10.0.0.5:9001", False),
    ],
)
def test_hosted_endpoints_need_tls_except_on_loopback(url: str, allowed: bool) -> None:
    env = MINIMAL | HOSTED_KEYS | {"POLARGRID_BASE_URL": url, "FAL_BASE_URL": url}
    if allowed:
        settings = Settings.from_env(env)
        assert (settings.polargrid_base_url, settings.fal_base_url) == (url, url)
        return
    problems = problems_from(env)
    assert [p.split(" ", 1)[0] for p in problems] == ["POLARGRID_BASE_URL", "FAL_BASE_URL"]
    for problem in problems:
        assert "uses ws://: use wss://" in problem
        assert "\n" not in problem


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("https://pg.example.net", "is not a wss:// URL with a host"),
        ("pg.example.net", "is not a wss:// URL with a host"),
        ("wss://", "is not a wss:// URL with a host"),
        ("wss://pg.example.net/a b", "is not a wss:// URL with a host"),
        ("wss://pg.example.net:99999", "is not a valid URL"),
        ("wss://[::1", "is not a valid URL"),
        ("wss://pg_live_0123456789@pg.example.net", "must not carry credentials"),
        ("wss://user:pg_live_0123456789@pg.example.net", "must not carry credentials"),
        ("wss://pg.example.net/?token=pg_live_0123456789", "must not carry a query string"),
        ("wss://pg.example.net/?", "must not carry a query string"),
        ("wss://pg.example.net/#pg_live_0123456789", "or fragment"),
        ("wss://pg.example.net/pg_live_0123456789/", "contains POLARGRID_API_KEY"),
    ],
)
def test_a_bad_polargrid_base_url_is_one_line_and_never_echoes_the_key(
    url: str, fragment: str
) -> None:
    (problem,) = problems_from(MINIMAL | HOSTED_KEYS | {"POLARGRID_BASE_URL": url})
    assert problem.startswith("POLARGRID_BASE_URL")
    assert fragment in problem
    assert "\n" not in problem
    assert "pg_live_0123456789" not in problem


def test_a_fal_base_url_with_its_key_in_it_is_refused() -> None:
    env = MINIMAL | HOSTED_KEYS | {"FAL_BASE_URL": "wss://fal.example.net/?fal_key=x"}
    (problem,) = problems_from(env)
    assert problem.startswith("FAL_BASE_URL")
    assert "must not carry a query string" in problem
    (problem,) = problems_from(
        MINIMAL | HOSTED_KEYS | {"FAL_BASE_URL": "wss://fal-live-0123456789.example.net"}
    )
    assert "contains FAL_KEY" in problem
    assert "fal-live-0123456789" not in problem


@pytest.mark.parametrize(
    ("name", "key"), [("POLARGRID_BASE_URL", "POLARGRID_API_KEY"), ("FAL_BASE_URL", "FAL_KEY")]
)
def test_a_hosted_endpoint_without_its_key_is_a_mistake(name: str, key: str) -> None:
    (problem,) = problems_from(MINIMAL | {name: "wss://hosted.example.net"})
    assert problem == f"{name} is set but {key} is not: set the key too, or unset it"


def test_hosted_endpoints_reach_the_session_factories() -> None:
    settings = Settings.from_env(
        MINIMAL
        | HOSTED_KEYS
        | {
            "POLARGRID_BASE_URL": "wss://pg.internal.example.net/edge",
            "FAL_BASE_URL": "wss://eu.fal.example.net",
        }
    )
    factories = model_factories(settings, clock=lambda: 0.0)
    polargrid, fal = factories["polargrid"], factories["fal"]
    request = SessionRequest(prompt="Hello.", voice="NATF2")
    assert repr(polargrid.create(request)).startswith(
        "<PolarGridSession wss://pg.internal.example.net/edge/v1/voice/personaplex?"
    )
    assert repr(fal.create(request)) == (
        "<FalSession wss://eu.fal.example.net/fal-ai/personaplex/realtime>"
    )
    # Unset, each provider's own endpoint (the region's for PolarGrid).
    defaults = model_factories(Settings.from_env(MINIMAL | HOSTED_KEYS), clock=lambda: 0.0)
    assert "wss://api.yto-01.edge.polargrid.ai/v1/" in repr(defaults["polargrid"].create(request))
    assert "wss://fal.run/fal-ai/" in repr(defaults["fal"].create(request))


def _ed25519_public_key() -> str:
    return public_key_text(Ed25519PrivateKey.generate())


def test_carriers_are_off_without_credentials_and_on_with_them() -> None:
    assert Settings.from_env(MINIMAL).carriers.enabled == ()
    settings = Settings.from_env(
        MINIMAL
        | {
            "TELNYX_PUBLIC_KEY": _ed25519_public_key(),
            "TELNYX_API_KEY": "KEY0123",
            "PLIVO_AUTH_ID": "MA123",
            "PLIVO_AUTH_TOKEN": "plivo-secret-xyz",
            "VONAGE_SIGNATURE_SECRET": "vonage-secret-xyz",
            "SIGNALWIRE_SIGNING_KEY": "signalwire-secret-xyz",
            "EXOTEL_ALLOWED_IPS": "203.0.113.0/24",
            "PHONEBRIDGE_CARRIER_RATE": "8000",
        }
    )
    assert settings.carriers.enabled == ("telnyx", "plivo", "vonage", "signalwire", "exotel")
    assert settings.carriers.rate == 8_000
    assert "secret-xyz" not in repr(settings)


def test_carrier_settings_problems_are_one_line_each() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            MINIMAL
            | {
                "TELNYX_PUBLIC_KEY": "c2hvcnQ=",
                "PLIVO_AUTH_TOKEN": "tok",
                "VONAGE_APPLICATION_ID": "app",
                "SIGNALWIRE_PROJECT_ID": "p",
                "EXOTEL_BASIC_USER": "u",
                "EXOTEL_ALLOWED_IPS": "nonsense",
                "PHONEBRIDGE_CARRIER_RATE": "24000",
                "PLIVO_API_URL": "ftp://x",
            }
        )
    problems = caught.value.problems
    assert all("\n" not in problem for problem in problems)
    text = " | ".join(problems)
    for expected in (
        "PHONEBRIDGE_CARRIER_RATE",
        "TELNYX_PUBLIC_KEY:",
        "TELNYX_API_KEY is not",
        "PLIVO_AUTH_ID is not",
        "VONAGE_PRIVATE_KEY is not",
        "SIGNALWIRE_SPACE_URL",
        "EXOTEL_BASIC_PASSWORD is not",
        "EXOTEL_ALLOWED_IPS:",
        "PLIVO_API_URL",
    ):
        assert expected in text, expected


@pytest.mark.parametrize("carrier", DIALLING_CARRIERS)
def test_each_dialling_carrier_needs_its_credentials_to_call_out(carrier: str) -> None:
    problems = problems_from(
        {
            "PHONEBRIDGE_PUBLIC_URL": "https://bridge.example.com",
            "PHONEBRIDGE_INSECURE_SKIP_TWILIO_SIGNATURE": "1",
            "PHONEBRIDGE_OUTBOUND_ENABLED": "1",
            "PHONEBRIDGE_OUTBOUND_COUNTRIES": "1",
            "PHONEBRIDGE_OUTBOUND_CALLER_IDS": "+14165550123",
            "PHONEBRIDGE_OUTBOUND_CARRIER": carrier,
        }
    )
    # One line, naming what this carrier dials with (every carrier has a rule).
    assert len(problems) == 1, problems
    if carrier == "twilio":
        assert "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not both set" in problems[0]
    else:
        assert problems[0].startswith(f"PHONEBRIDGE_OUTBOUND_CARRIER is {carrier} but ")


def test_exotel_outbound_settings_go_together_and_stay_secret() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(MINIMAL | {"EXOTEL_API_KEY": "k", "EXOTEL_API_URL": "ftp://x"})
    text = " | ".join(caught.value.problems)
    assert "EXOTEL_ACCOUNT_SID, EXOTEL_API_KEY and EXOTEL_API_TOKEN go together" in text
    assert "EXOTEL_API_URL" in text
    # Exotel dials only with its REST trio and its media socket's check both set.
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            MINIMAL
            | {
                "PHONEBRIDGE_OUTBOUND_CARRIER": "exotel",
                "PHONEBRIDGE_OUTBOUND_ENABLED": "1",
                "PHONEBRIDGE_OUTBOUND_COUNTRIES": "91",
                "PHONEBRIDGE_OUTBOUND_CALLER_IDS": "+918047112345",
                "EXOTEL_ACCOUNT_SID": "sid",
                "EXOTEL_API_KEY": "k",
                "EXOTEL_API_TOKEN": "exotel-token-xyz",
            }
        )
    assert any("PHONEBRIDGE_OUTBOUND_CARRIER is exotel" in p for p in caught.value.problems)
    settings = Settings.from_env(
        MINIMAL
        | {
            "PHONEBRIDGE_OUTBOUND_CARRIER": "exotel",
            "EXOTEL_ALLOWED_IPS": "203.0.113.0/24",
            "EXOTEL_ACCOUNT_SID": "sid",
            "EXOTEL_API_KEY": "k",
            "EXOTEL_API_TOKEN": "exotel-token-xyz",
        }
    )
    assert settings.outbound_carrier == "exotel"
    assert settings.carriers.exotel_api_url == "https://api.in.exotel.com"
    assert "exotel-token-xyz" not in repr(settings)
