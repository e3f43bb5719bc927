"""Toll-fraud guard: how many calls a caller (and the whole instance) may start.

Phone numbers are public and every answered call costs model time (hosted
PersonaPlex bills each wall-clock second a socket is open), so the voice
webhook asks this guard before it takes a lease (issue 8, "Toll-fraud guard"):

- **per-caller rate**: at most ``caller_calls_per_window`` admitted calls from
  one ``From`` number in any ``caller_window_seconds`` (an hour by default);
- **global rate**: at most ``global_calls_per_minute`` admitted calls for the
  instance in any 60 seconds (caller ID is easy to spoof, so a flood from ever
  new numbers is stopped here, not by the per-caller limit);
- **per-caller concurrency**: at most ``caller_max_concurrent`` calls of one
  caller holding a slot at once. The caller's active-call count is passed in by
  the bridge, derived from the same leases as the instance-wide cap
  (``PHONEBRIDGE_MAX_CALLS``, :class:`~phonebridge.calls.admission.Admission`),
  so there is one source of truth for "this call still holds a slot".

Withheld caller IDs (Twilio sends ``anonymous``, ``+266696687`` — "ANONYMOUS"
on a keypad —, ``Restricted``, an empty ``From`` and similar) are one shared
caller, :data:`ANONYMOUS_CALLER`: otherwise hiding your number would be a way
round every per-caller limit. Operators with many legitimate withheld-number
callers should raise the per-caller limits (the global one still bounds cost).

Sans-I/O: time is passed in (a monotonic clock: ``now`` never goes back),
nothing here touches the clock, the loop or a socket. Memory is bounded: a
caller whose window is empty is forgotten, and the table holds at most
``max_tracked_callers`` callers (the one admitted longest ago is evicted first
when it is full).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from enum import StrEnum

ANONYMOUS_CALLER = "anonymous"
"""The one bucket every withheld or missing caller ID shares."""

GLOBAL_WINDOW_SECONDS = 60.0
DEFAULT_MAX_TRACKED_CALLERS = 10_000

# What Twilio (and the carriers behind it) put in ``From`` when the number is
# withheld: words, or the same words spelt on a keypad as a fake number.
_WITHHELD = frozenset(
    {
        "",
        "anonymous",
        "restricted",
        "unknown",
        "unavailable",
        "private",
        "blocked",
        "withheld",
        "+266696687",  # ANONYMOUS
        "+7378742833",  # RESTRICTED
        "+8656696",  # UNKNOWN
        "+86282452253",  # UNAVAILABLE
        "+2562533",  # BLOCKED
    }
)


class GuardReason(StrEnum):
    """Which limit refused the call (a fixed vocabulary: safe as a metric label)."""

    CALLER_RATE = "caller_rate"
    CALLER_CONCURRENT = "caller_concurrent"
    GLOBAL_RATE = "global_rate"


@dataclass(frozen=True, slots=True)
class GuardLimits:
    """The configured limits; ``0`` turns a limit off."""

    caller_calls_per_window: int = 10
    caller_window_seconds: float = 3600.0
    caller_max_concurrent: int = 2
    global_calls_per_minute: int = 60
    max_tracked_callers: int = DEFAULT_MAX_TRACKED_CALLERS

    def __post_init__(self) -> None:
        # Settings validate the user's values; this catches a programming error.
        if min(self.caller_calls_per_window, self.caller_max_concurrent) < 0:
            raise ValueError("limits must be >= 0 (0 = off)")
        if self.global_calls_per_minute < 0 or self.caller_window_seconds <= 0:
            raise ValueError("the global limit must be >= 0 and the window > 0")
        if self.max_tracked_callers < 1:
            raise ValueError("max_tracked_callers must be at least 1")


@dataclass(frozen=True, slots=True)
class Admitted:
    """The call may go on; call :meth:`TollFraudGuard.record` once it takes a slot."""

    caller: str


@dataclass(frozen=True, slots=True)
class Refused:
    """The call must hear the busy message and open nothing."""

    caller: str
    reason: GuardReason
    detail: str
    retry_after: float | None = None
    """Seconds until the limit would admit this caller again (None: when a call ends)."""


GuardDecision = Admitted | Refused


def caller_key(from_number: str) -> str:
    """The bucket a ``From`` value counts against: the number, or the anonymous one."""
    number = from_number.strip()
    if number.lower() in _WITHHELD:
        return ANONYMOUS_CALLER
    return number


def mask_number(number: str) -> str:
    """``number`` with all but its last four digits hidden, for logs.

    Caller numbers are personal data: the call index keeps them (it is the
    operator's record), log lines do not need them.
    """
    if number == ANONYMOUS_CALLER:
        return number
    digits_seen = 0
    masked: list[str] = []
    for character in reversed(number):
        if character.isalnum():
            digits_seen += 1
            masked.append(character if digits_seen <= 4 else "*")
        else:
            masked.append(character)
    return "".join(reversed(masked))


class TollFraudGuard:
    """Per-caller and global call-rate limits, and the per-caller concurrency cap.

    Rates are *sliding-window logs*: the admission times inside the window are
    kept and counted. Unlike a token bucket (which allows a burst of its
    capacity plus the refill) or a fixed window (up to twice the limit across
    a window edge), this makes "N calls per hour" exactly true in every hour,
    which is what an operator sizing a bill expects; and because only admitted
    calls are logged, a caller costs at most N timestamps.

    Only admitted calls count: a refused call costs the operator nothing (one
    TwiML answer, no model), and counting refusals would let one redialling
    caller stay locked out for ever.
    """

    def __init__(self, limits: GuardLimits) -> None:
        self.limits = limits
        # Admission times per caller, oldest caller (by last admission) first,
        # so expired callers and eviction candidates are at the front.
        self._callers: OrderedDict[str, deque[float]] = OrderedDict()
        self._global: deque[float] = deque()

    @property
    def tracked_callers(self) -> int:
        """Callers with admissions inside their window (what the memory bound caps)."""
        return len(self._callers)

    def check(self, from_number: str, now: float, *, active_calls: int) -> GuardDecision:
        """May a call from ``from_number`` start at ``now``?

        ``active_calls`` is how many calls of this caller hold a slot right now
        (pending or live). Nothing is recorded: call :meth:`record` when the
        call has actually taken a slot, so a call refused later (busy) does not
        use up the caller's quota.
        """
        caller = caller_key(from_number)
        self._forget_expired(now)
        limits = self.limits
        if limits.caller_max_concurrent and active_calls >= limits.caller_max_concurrent:
            return Refused(
                caller,
                GuardReason.CALLER_CONCURRENT,
                f"caller already has {active_calls} call(s) in progress "
                f"(limit {limits.caller_max_concurrent})",
            )
        times = self._callers.get(caller)
        if limits.caller_calls_per_window and times is not None:
            _drop_older_than(times, now - limits.caller_window_seconds)
            if len(times) >= limits.caller_calls_per_window:
                return Refused(
                    caller,
                    GuardReason.CALLER_RATE,
                    f"caller reached {limits.caller_calls_per_window} call(s) per "
                    f"{limits.caller_window_seconds:g} s",
                    retry_after=times[0] + limits.caller_window_seconds - now,
                )
        if limits.global_calls_per_minute:
            _drop_older_than(self._global, now - GLOBAL_WINDOW_SECONDS)
            if len(self._global) >= limits.global_calls_per_minute:
                return Refused(
                    caller,
                    GuardReason.GLOBAL_RATE,
                    f"instance reached {limits.global_calls_per_minute} new call(s) per minute",
                    retry_after=self._global[0] + GLOBAL_WINDOW_SECONDS - now,
                )
        return Admitted(caller)

    def record(self, caller: str, now: float) -> None:
        """Count an admitted call of ``caller`` (a key from :class:`Admitted`) at ``now``."""
        if self.limits.global_calls_per_minute:
            self._global.append(now)
        if not self.limits.caller_calls_per_window:
            return
        times = self._callers.get(caller)
        if times is None:
            while len(self._callers) >= self.limits.max_tracked_callers:
                # Full: forget the caller admitted longest ago. Its quota resets
                # early, the global limit still bounds what that can cost.
                self._callers.popitem(last=False)
            times = self._callers[caller] = deque()
        else:
            self._callers.move_to_end(caller)
        times.append(now)

    def _forget_expired(self, now: float) -> None:
        """Drop callers whose newest admission has left the window (amortised O(1))."""
        horizon = now - self.limits.caller_window_seconds
        while self._callers:
            oldest = next(iter(self._callers.values()))
            if oldest and oldest[-1] > horizon:
                return
            self._callers.popitem(last=False)


def _drop_older_than(times: deque[float], horizon: float) -> None:
    while times and times[0] <= horizon:
        times.popleft()


class AnsweredCalls:
    """Call SIDs this process has answered a voice webhook for (the newest ``capacity``).

    Twilio's signature has no nonce or timestamp, so a captured webhook stays
    valid for ever. A webhook for a call SID that was already answered and is
    no longer pending is a replay (Twilio retries only while it has no answer,
    and then the call is still pending): it must not open a second model
    session. Bounded like the caller table; a replay of a call older than the
    newest ``capacity`` is caught by the call-rate limits instead.
    """

    def __init__(self, capacity: int = DEFAULT_MAX_TRACKED_CALLERS) -> None:
        self._capacity = capacity
        self._sids: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sids)

    def __contains__(self, call_sid: object) -> bool:
        return call_sid in self._sids

    def add(self, call_sid: str) -> None:
        self._sids[call_sid] = None
        self._sids.move_to_end(call_sid)
        while len(self._sids) > self._capacity:
            self._sids.popitem(last=False)
