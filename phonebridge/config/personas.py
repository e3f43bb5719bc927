"""Settings against personas: what a persona needs that the settings must provide."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phonebridge.config.settings import Settings
    from phonebridge.personas.book import PersonaBook


def persona_problems(settings: Settings, book: PersonaBook) -> list[str]:
    """Problems between ``settings`` and the personas: what start-up must refuse."""
    problems: list[str] = []
    configured = {
        "personaplex": bool(settings.personaplex_urls),
        "polargrid": settings.polargrid_api_key is not None,
        "fal": settings.fal_key is not None,
    }
    needs = {
        "personaplex": "PERSONAPLEX_URLS",
        "polargrid": "POLARGRID_API_KEY",
        "fal": "FAL_KEY",
    }
    for persona in book.personas:
        label = f"persona {persona.id!r} ({persona.source})"
        transfer = persona.transfer
        if (
            transfer is not None
            and transfer.mode == "warm"
            and (settings.twilio_account_sid is None or settings.twilio_auth_token is None)
        ):
            problems.append(
                f"{label} has a warm transfer, which rings the human by REST, but "
                "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not both set: set them, "
                "or use mode: cold"
            )
        if settings.webhook_secret is None and (
            persona.context is not None or persona.webhooks.call_ended is not None
        ):
            problems.append(
                f"{label} calls webhooks (context or webhooks.call_ended) but "
                "PHONEBRIDGE_WEBHOOK_SECRET is not set: every webhook is signed with it"
            )
        if not configured[persona.provider] and (
            persona.provider != "personaplex" or persona.overflow is None
        ):
            problems.append(
                f"{label} uses provider {persona.provider} but {needs[persona.provider]} "
                "is not set"
                + (
                    ": set it, or add an overflow provider"
                    if persona.provider == "personaplex"
                    else ""
                )
            )
        if persona.overflow is not None and not configured[persona.overflow]:
            problems.append(
                f"{label} overflows to {persona.overflow} but {needs[persona.overflow]} "
                "is not set: set it, or remove overflow"
            )
    return problems
