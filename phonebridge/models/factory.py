"""Model-session factories for the three PersonaPlex providers (models/base.py contract).

Settings are plain frozen dataclasses handed in by :mod:`phonebridge.config`
(the only place environment variables are read); keys are excluded from
their reprs. The clock is injected so :class:`~phonebridge.models.base.SessionTimings`
and the hosted providers' Retry-After gates can be driven by tests; so is the
wall clock, read only to turn an HTTP-date ``Retry-After`` into a wait.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from phonebridge.errors import ConfigError, LocalProtocolError
from phonebridge.models.base import ModelSession, ModelSessionFactory, ProviderInfo, SessionRequest
from phonebridge.models.fal import DEFAULT_FAL_OPEN_TIMEOUT, FalSession
from phonebridge.models.fal_protocol import DEFAULT_BASE_URL as FAL_BASE_URL
from phonebridge.models.fal_protocol import config_for
from phonebridge.models.personaplex import DEFAULT_HANDSHAKE_TIMEOUT, PersonaPlexSession
from phonebridge.models.polargrid import PolarGridSession
from phonebridge.models.polargrid_protocol import DEFAULT_REGION, AuthMode, region_base_url
from phonebridge.models.retry_gate import LocalRetryGate, RetryGate
from phonebridge.models.wsclient import DEFAULT_CLOSE_TIMEOUT, DEFAULT_OPEN_TIMEOUT

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class PersonaPlexSettings:
    """Self-hosted servers (``PERSONAPLEX_URLS=ws://gpu1:8998,...``): one call each (§2.5)."""

    server_urls: tuple[str, ...]
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    open_timeout: float = DEFAULT_OPEN_TIMEOUT
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT
    opus_complexity: int | None = None


@dataclass(frozen=True, slots=True)
class PolarGridSettings:
    """PolarGrid hosted (``POLARGRID_API_KEY``, ``POLARGRID_REGION``)."""

    api_key: str = field(repr=False)
    region: str = DEFAULT_REGION
    base_url: str | None = None  # POLARGRID_BASE_URL: replaces wss://api.<region>.edge.polargrid.ai
    auth: AuthMode = "subprotocol"
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    open_timeout: float = DEFAULT_OPEN_TIMEOUT
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT
    opus_complexity: int | None = None


@dataclass(frozen=True, slots=True)
class FalSettings:
    """fal.ai realtime (``FAL_KEY``); sampling defaults are fal's own (§4)."""

    api_key: str = field(repr=False)
    base_url: str = FAL_BASE_URL
    open_timeout: float = DEFAULT_FAL_OPEN_TIMEOUT
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT
    temperature_audio: float = 0.8
    temperature_text: float = 0.7
    top_k_audio: int = 250
    top_k_text: int = 25
    seed: int | None = None


ProviderSettings = PersonaPlexSettings | PolarGridSettings | FalSettings


class PersonaPlexFactory:
    """Sessions on self-hosted servers; the caller's lease picks ``server_url``."""

    provider = "personaplex"

    def __init__(
        self, settings: PersonaPlexSettings, *, clock: Clock, logger: logging.Logger | None
    ) -> None:
        if not settings.server_urls:
            raise ConfigError("personaplex needs at least one server URL (PERSONAPLEX_URLS)")
        self.settings = settings
        self.info = ProviderInfo(self.provider, exclusive_servers=settings.server_urls)
        self._clock = clock
        self._logger = logger

    def create(self, request: SessionRequest, *, server_url: str | None = None) -> ModelSession:
        if server_url is None:
            if len(self.settings.server_urls) != 1:
                # Never pick a server behind the lease logic's back: two calls on
                # one server hang the second and may swap prompts (§2.5).
                raise LocalProtocolError("pick a self-hosted server (a lease) with server_url=")
            server_url = self.settings.server_urls[0]
        s = self.settings
        return PersonaPlexSession(
            request,
            server_url=server_url,
            clock=self._clock,
            handshake_timeout=s.handshake_timeout,
            open_timeout=s.open_timeout,
            close_timeout=s.close_timeout,
            opus_complexity=s.opus_complexity,
            logger=self._logger,
        )


class PolarGridFactory:
    provider = "polargrid"

    def __init__(
        self,
        settings: PolarGridSettings,
        *,
        clock: Clock,
        logger: logging.Logger | None,
        retry_gate: RetryGate | None = None,
        wall_clock: Clock = time.time,
    ) -> None:
        if not settings.api_key:
            raise ConfigError("polargrid needs an API key (POLARGRID_API_KEY)")
        if settings.base_url is None:
            region_base_url(settings.region)  # fail at start-up, not on the first call
        self.settings = settings
        self.info = ProviderInfo(self.provider)
        self._clock = clock
        self._wall_clock = wall_clock
        self._logger = logger
        # One 429 holds off every session (of every replica, when the gate is in Redis).
        self.retry_gate: RetryGate = retry_gate or LocalRetryGate(self.provider)

    def create(self, request: SessionRequest, *, server_url: str | None = None) -> ModelSession:
        s = self.settings
        return PolarGridSession(
            request,
            api_key=s.api_key,
            region=s.region,
            base_url=server_url or s.base_url,
            auth=s.auth,
            clock=self._clock,
            handshake_timeout=s.handshake_timeout,
            open_timeout=s.open_timeout,
            close_timeout=s.close_timeout,
            opus_complexity=s.opus_complexity,
            logger=self._logger,
            retry_gate=self.retry_gate,
            wall_clock=self._wall_clock,
        )


class FalFactory:
    provider = "fal"

    def __init__(
        self,
        settings: FalSettings,
        *,
        clock: Clock,
        logger: logging.Logger | None,
        retry_gate: RetryGate | None = None,
        wall_clock: Clock = time.time,
    ) -> None:
        if not settings.api_key:
            raise ConfigError("fal needs an API key (FAL_KEY)")
        self.settings = settings
        self.info = ProviderInfo(self.provider)
        self._clock = clock
        self._wall_clock = wall_clock
        self._logger = logger
        # One 429 holds off every session (of every replica, when the gate is in Redis).
        self.retry_gate: RetryGate = retry_gate or LocalRetryGate(self.provider)

    def create(self, request: SessionRequest, *, server_url: str | None = None) -> ModelSession:
        s = self.settings
        config = config_for(
            request,
            temperature_audio=s.temperature_audio,
            temperature_text=s.temperature_text,
            top_k_audio=s.top_k_audio,
            top_k_text=s.top_k_text,
            seed=s.seed,
        )
        return FalSession(
            request,
            api_key=s.api_key,
            config=config,
            base_url=server_url or s.base_url,
            clock=self._clock,
            open_timeout=s.open_timeout,
            close_timeout=s.close_timeout,
            logger=self._logger,
            retry_gate=self.retry_gate,
            wall_clock=self._wall_clock,
        )


def make_factory(
    provider: str,
    settings: ProviderSettings,
    *,
    clock: Clock = time.monotonic,
    wall_clock: Clock = time.time,
    logger: logging.Logger | None = None,
) -> ModelSessionFactory:
    """The session factory for ``provider`` (``personaplex``, ``polargrid`` or ``fal``)."""
    match provider, settings:
        case "personaplex", PersonaPlexSettings():
            return PersonaPlexFactory(settings, clock=clock, logger=logger)
        case "polargrid", PolarGridSettings():
            return PolarGridFactory(settings, clock=clock, logger=logger, wall_clock=wall_clock)
        case "fal", FalSettings():
            return FalFactory(settings, clock=clock, logger=logger, wall_clock=wall_clock)
        case (("personaplex" | "polargrid" | "fal"), _):
            raise ConfigError(f"{provider} needs its own settings, not {type(settings).__name__}")
    raise ConfigError(f"unknown model provider {provider!r} (personaplex, polargrid, fal)")
