"""The one exception tree of phonebridge.

Every error the project raises on purpose derives from :class:`PhonebridgeError`::

    PhonebridgeError
    ├── ConfigError              settings or persona files are missing or inconsistent
    ├── AudioError               a codec or container was misused or fed corrupt data
    │   ├── OggError             corrupt Ogg input (bad capture pattern, CRC, version, ...)
    │   └── OpusError            libopus refused to encode or decode
    ├── ProtocolError            a wire protocol was broken
    │   ├── LocalProtocolError   we misused a protocol (a bug on our side)
    │   └── RemoteProtocolError  the peer sent something the protocol forbids
    ├── ModelError               a PersonaPlex session could not be opened or died
    │   │                        (carries ``retryable`` and ``retry_after``)
    │   ├── ModelAuthError       401/402/403: fix the key or the account, never retry
    │   ├── ModelRateLimited     429: retry after ``retry_after`` seconds
    │   ├── ModelUnavailable     404/502/connection refused: retry on another provider
    │   ├── ModelBusy            no free self-hosted server (or it hung: §2.5)
    │   └── HandshakeTimeout     the server never sent the 0x00 handshake
    ├── CapacityError            no model slot and no overflow: the caller hears "busy"
    ├── StorageError             recording, transcript or call index could not be written
    └── CoordinationError        the shared state store (Redis) did not answer in time

*Local* errors mean our code is wrong; *remote* errors mean the peer is. Raise
with ``raise ... from exc`` so the cause survives; swallow only at a task
boundary, and log there with the call SID.
"""

from __future__ import annotations


class PhonebridgeError(Exception):
    """Base of every error phonebridge raises on purpose."""


class ConfigError(PhonebridgeError):
    """Settings or persona files are missing, malformed or inconsistent."""


class AudioError(PhonebridgeError):
    """A codec or container was misused or fed corrupt data."""


class OggError(AudioError):
    """Corrupt or unsupported Ogg input."""


class OpusError(AudioError):
    """libopus refused to encode or decode."""


class ProtocolError(PhonebridgeError):
    """A wire protocol was broken."""


class LocalProtocolError(ProtocolError):
    """We misused a protocol: a bug on our side."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class ModelError(PhonebridgeError):
    """A PersonaPlex session could not be opened, or died.

    ``retryable`` says whether the same request may succeed later (or on another
    provider); ``retry_after`` is the wait the provider asked for, in seconds.
    """

    retryable: bool = False

    def __init__(
        self, message: str, *, retryable: bool | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable
        self.retry_after = retry_after


class ModelAuthError(ModelError):
    """The provider rejected our credentials or account (401/402/403)."""

    retryable = False


class ModelRateLimited(ModelError):
    """The provider asked us to slow down (429); see ``retry_after``."""

    retryable = True


class ModelUnavailable(ModelError):
    """The model is not reachable here (404/502, refused): try another provider."""

    retryable = True


class ModelBusy(ModelError):
    """Every self-hosted server is in a call (or the one we tried hung)."""

    retryable = True


class HandshakeTimeout(ModelError):
    """The server never sent the 0x00 handshake within the allowed time."""

    retryable = True


class CapacityError(PhonebridgeError):
    """No model slot is free and the persona has no overflow provider."""


class StorageError(PhonebridgeError):
    """A recording, transcript or call record could not be written."""


class CoordinationError(PhonebridgeError):
    """The shared coordination store (Redis) failed or did not answer in time.

    Never ends a call in progress; a new call that needed it gets hosted
    overflow or the busy answer (phonebridge/coordination/).
    """
