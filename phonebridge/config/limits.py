"""Call limits, the listening address, logging and retention."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phonebridge.config.settings import Settings


def check_limits(settings: Settings, problems: list[str]) -> None:
    if settings.max_calls < 1:
        problems.append("PHONEBRIDGE_MAX_CALLS must be at least 1")
    if settings.worker is not None and settings.worker < 0:
        problems.append("PHONEBRIDGE_WORKER must be 0 or more (it is set by serve --workers)")
    if settings.pending_timeout <= 0:
        problems.append("PHONEBRIDGE_PENDING_TIMEOUT must be more than 0 seconds")
    if settings.browser_calls_per_user < 1:
        problems.append("PHONEBRIDGE_BROWSER_CALLS_PER_USER must be at least 1")
    for name, value in (
        ("PHONEBRIDGE_CALLER_MAX_CALLS_PER_HOUR", settings.caller_max_calls_per_hour),
        ("PHONEBRIDGE_CALLER_MAX_CONCURRENT", settings.caller_max_concurrent),
        ("PHONEBRIDGE_MAX_NEW_CALLS_PER_MINUTE", settings.max_new_calls_per_minute),
    ):
        if value < 0:
            problems.append(f"{name} must be 0 (off) or more, not {value}")
    if not 0 <= settings.port <= 65535:
        problems.append(f"PHONEBRIDGE_PORT {settings.port} is not a TCP port (0-65535)")
    if not settings.host.strip():
        problems.append("PHONEBRIDGE_HOST must not be empty")
    if settings.retention_days is not None and settings.retention_days < 1:
        problems.append("PHONEBRIDGE_RETENTION_DAYS must be at least 1 (or unset to keep all)")
    if settings.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        problems.append(
            f"PHONEBRIDGE_LOG_LEVEL {settings.log_level!r} must be DEBUG, INFO, WARNING, "
            "ERROR or CRITICAL"
        )
