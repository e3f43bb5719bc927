"""What the bridge calls out to besides the model: transcription and webhooks; answer timing."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from phonebridge.models.redact import redact_url

if TYPE_CHECKING:
    from phonebridge.config.settings import Settings

DEFAULT_ANSWER_WITHIN_SECONDS = 3.0
"""Why 3 s: conditioning took 2-3 s on the real server code with a tiny model; a
GPU server under load takes longer, and past the bound the call is answered
anyway. 3 s keeps 12 s of Twilio's 15 s webhook timeout in hand."""
MAX_ANSWER_WITHIN_SECONDS = 10.0


def check_transcription(settings: Settings, problems: list[str]) -> None:
    if settings.transcribe_url is None:
        if settings.transcribe_key is not None or settings.transcribe_model is not None:
            problems.append(
                "PHONEBRIDGE_TRANSCRIBE_KEY/_MODEL are set but PHONEBRIDGE_TRANSCRIBE_URL is "
                "not: set the URL too, or unset them"
            )
    elif urlsplit(settings.transcribe_url).scheme not in ("http", "https"):
        problems.append(
            f"PHONEBRIDGE_TRANSCRIBE_URL {redact_url(settings.transcribe_url)!r} is not an "
            "http(s) URL"
        )


def check_webhooks(settings: Settings, problems: list[str]) -> None:
    url = settings.call_ended_webhook_url
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(
                f"PHONEBRIDGE_CALL_ENDED_WEBHOOK_URL {redact_url(url)!r} is not an http(s) URL"
            )
        if settings.webhook_secret is None:
            problems.append(
                "PHONEBRIDGE_CALL_ENDED_WEBHOOK_URL is set but PHONEBRIDGE_WEBHOOK_SECRET is "
                "not: call summaries are always signed"
            )
    if settings.recording_link_seconds <= 0:
        problems.append("PHONEBRIDGE_RECORDING_LINK_SECONDS must be more than 0 seconds")
    if not 0 <= settings.answer_within_seconds <= MAX_ANSWER_WITHIN_SECONDS:
        problems.append(
            f"PHONEBRIDGE_ANSWER_WITHIN_SECONDS must be 0 (answer at once) to "
            f"{MAX_ANSWER_WITHIN_SECONDS:g} (Twilio waits 15 s for the webhook)"
        )
