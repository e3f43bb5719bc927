"""The coordination settings: validated at start-up, the Redis password never shown."""

from __future__ import annotations

import logging

import pytest

from phonebridge.config import Settings, SettingsError, unknown_variables

BASE = {
    "PHONEBRIDGE_PUBLIC_URL": "https://bridge.example.com",
    "PHONEBRIDGE_INSECURE_SKIP_TWILIO_SIGNATURE": "1",
}


def settings(**env: str) -> Settings:
    return Settings.from_env({**BASE, **env})


def test_unset_means_one_process_in_memory() -> None:
    s = settings()
    assert s.redis_url is None
    assert (s.lease_ttl_seconds, s.redis_timeout_seconds) == (10.0, 0.5)
    assert s.crash_check_seconds == 15.0
    # Unset with a long lease TTL: as long as the TTL (never shorter, see config/cluster.py).
    assert settings(PHONEBRIDGE_LEASE_TTL_SECONDS="40").crash_check_seconds == 40.0


def test_a_redis_url_is_read_and_its_password_masked(caplog: pytest.LogCaptureFixture) -> None:
    s = settings(
        PHONEBRIDGE_REDIS_URL="rediss://:s3cret-pass@redis.internal:6380/2",
        PHONEBRIDGE_LEASE_TTL_SECONDS="6",
        PHONEBRIDGE_REDIS_TIMEOUT_SECONDS="1.5",
    )
    assert s.redis_url == "rediss://:s3cret-pass@redis.internal:6380/2"
    assert (s.lease_ttl_seconds, s.redis_timeout_seconds) == (6.0, 1.5)
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings: %r", s)
    assert "s3cret-pass" not in repr(s)
    assert "s3cret-pass" not in caplog.text
    assert "redis.internal:6380" in repr(s)
    assert unknown_variables({"PHONEBRIDGE_REDIS_URL": "x", "PHONEBRIDGE_LEASE_TTL": "1"}) == [
        "PHONEBRIDGE_LEASE_TTL is not a phonebridge setting "
        "(did you mean PHONEBRIDGE_LEASE_TTL_SECONDS?)"
    ]


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"PHONEBRIDGE_REDIS_URL": "http://:pw-secret@redis:6379"}, "not a redis:// or rediss://"),
        ({"PHONEBRIDGE_REDIS_URL": "unix:///run/redis.sock"}, "not a redis:// or rediss://"),
        ({"PHONEBRIDGE_REDIS_URL": "redis://redis:99999"}, "not a redis:// or rediss://"),
        ({"PHONEBRIDGE_REDIS_URL": "redis://redis:6379/cache"}, "database number"),
        ({"PHONEBRIDGE_LEASE_TTL_SECONDS": "0.5"}, "at least 1 second"),
        ({"PHONEBRIDGE_REDIS_TIMEOUT_SECONDS": "0"}, "more than 0"),
        ({"PHONEBRIDGE_REDIS_TIMEOUT_SECONDS": "5"}, "at most a quarter"),
        ({"PHONEBRIDGE_LEASE_TTL_SECONDS": "ten"}, "number of seconds"),
        ({"PHONEBRIDGE_CRASH_CHECK_SECONDS": "5"}, "at least PHONEBRIDGE_LEASE_TTL_SECONDS"),
    ],
)
def test_bad_values_are_refused_with_one_line_each(env: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError) as raised:
        settings(**env)
    assert len(raised.value.problems) == 1
    assert problem in raised.value.problems[0]
    assert "pw-secret" not in str(raised.value)
