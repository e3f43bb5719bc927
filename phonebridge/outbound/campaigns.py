"""Campaigns: contact uploads and the scheduler that dials them.

Uploads are CSV (a ``number`` column, optional ``time_zone``, every other
column a variable) or JSON (a list of ``{"number", "time_zone"?,
"variables"?}``). Every row is checked before anything is stored: one bad
row refuses the upload and names the row, so nothing is half-imported.

The scheduler's tick (:meth:`CampaignRunner.tick`, time passed in) per
running campaign: free slots = min(the campaign's concurrency less its calls
in flight in the whole cluster, the free model capacity); the per-day cap
(UTC day) bounds new attempts; due contacts are checked at dial time against
the do-not-call list and their calling window, then *claimed in SQL*
(atomically with the campaign's concurrency and daily cap, for the whole
cluster: outbound/store.py) and dialled. A contact outside its window is
deferred to the window's next opening; one whose zones never share an open
moment is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from phonebridge.errors import StorageError
from phonebridge.outbound.numbers import (
    CallingWindow,
    check_zone,
    next_open,
    window_open,
    zones_for,
)
from phonebridge.outbound.service import Outbound, OutboundError
from phonebridge.outbound.store import Campaign, NewContact

log = logging.getLogger(__name__)

MAX_CONTACTS = 100_000
_VARIABLE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class UploadError(ValueError):
    """The contact list cannot be used; the message names the row."""


def parse_contacts(text: str, kind: str, outbound: Outbound) -> list[NewContact]:
    """Contacts from a CSV or JSON upload, every number checked (E.164, allowed country)."""
    rows = _csv_rows(text) if kind == "csv" else _json_rows(text)
    if not rows:
        raise UploadError("the contact list is empty")
    if len(rows) > MAX_CONTACTS:
        raise UploadError(f"at most {MAX_CONTACTS} contacts per campaign")
    contacts: list[NewContact] = []
    for line, (number, zone, variables) in enumerate(rows, start=1):
        try:
            normalized = outbound.check_number(number)
            if zone:
                check_zone(zone)
        except (OutboundError, ValueError) as exc:
            raise UploadError(f"contact {line}: {exc}") from exc
        for name, value in variables.items():
            if not name or not set(name) <= _VARIABLE_NAME_CHARS:
                raise UploadError(f"contact {line}: variable name {name!r} is not a-z, 0-9, _")
            if not isinstance(value, str):
                raise UploadError(f"contact {line}: variable {name!r} must be text")
        contacts.append(NewContact(normalized, variables, zone or None))
    return contacts


def _csv_rows(text: str) -> list[tuple[str, str, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "number" not in reader.fieldnames:
        raise UploadError("the CSV needs a header row with a 'number' column")
    rows = []
    for row in reader:
        number = (row.pop("number") or "").strip()
        zone = (row.pop("time_zone", "") or "").strip()
        variables = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        rows.append((number, zone, variables))
    return rows


def _json_rows(text: str) -> list[tuple[str, str, dict[str, str]]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UploadError(f"the JSON is not valid: {exc}") from exc
    if not isinstance(data, list):
        raise UploadError("the JSON must be a list of contacts")
    rows = []
    for line, item in enumerate(data, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("number"), str):
            raise UploadError(f"contact {line}: needs a 'number' string")
        variables: Any = item.get("variables", {})
        if not isinstance(variables, dict):
            raise UploadError(f"contact {line}: 'variables' must be an object")
        zone = item.get("time_zone") or ""
        if not isinstance(zone, str):
            raise UploadError(f"contact {line}: 'time_zone' must be text")
        rows.append((item["number"], zone, variables))
    return rows


@dataclass(frozen=True, slots=True)
class CampaignSettings:
    name: str
    persona: str
    from_: str | None
    concurrency: int = 1
    daily_cap: int | None = None
    max_attempts: int = 3
    retry_seconds: float = 3600.0
    window_start: str = "08:00"
    window_end: str = "21:00"

    def check(self) -> None:
        if not self.name.strip():
            raise UploadError("a campaign needs a name")
        if not 1 <= self.concurrency <= 100:
            raise UploadError("concurrency must be 1..100")
        if self.daily_cap is not None and self.daily_cap < 1:
            raise UploadError("daily_cap must be at least 1 (or unset)")
        if not 1 <= self.max_attempts <= 10:
            raise UploadError("max_attempts must be 1..10")
        if self.retry_seconds < 0:
            raise UploadError("retry_seconds must be 0 or more")
        try:
            CallingWindow.parse(self.window_start, self.window_end)
        except ValueError as exc:
            raise UploadError(str(exc)) from exc


def day_start(now: datetime, timezone: str | None) -> datetime:
    """The start of ``now``'s day for the daily cap: the business's day (the
    persona's ``timezone``, as for its opening hours), UTC's when it has none.
    Midnight that does not exist (a DST jump at 00:00) resolves forward, as
    ``zoneinfo`` folds it."""
    zone = ZoneInfo(timezone) if timezone is not None else UTC
    local = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    return local.astimezone(UTC)


class CampaignRunner:
    """Dials the running campaigns' contacts; one per process (claims make it safe)."""

    def __init__(
        self,
        outbound: Outbound,
        *,
        wall_clock: Callable[[], datetime],
        tick_seconds: float = 1.0,
        reconcile_seconds: float = 30.0,
    ) -> None:
        self._outbound = outbound
        self._store = outbound.store
        self._wall = wall_clock
        self._tick_seconds = tick_seconds
        self._reconcile_seconds = reconcile_seconds
        self._next_reconcile: datetime | None = None

    def now(self) -> datetime:
        return self._wall()

    async def create(
        self, settings: CampaignSettings, contacts: list[NewContact], created_by: str
    ) -> Campaign:
        outbound = self._outbound
        if not outbound.config.enabled:
            raise OutboundError(
                "outbound calls are disabled (set PHONEBRIDGE_OUTBOUND_ENABLED=1)", 403
            )
        settings.check()
        persona = outbound.persona(settings.persona)
        from_ = outbound.check_caller_id(settings.from_)
        return await self._store.create_campaign(
            name=settings.name.strip(),
            persona=persona.id,
            from_number=from_,
            created_by=created_by,
            concurrency=settings.concurrency,
            daily_cap=settings.daily_cap,
            max_attempts=settings.max_attempts,
            retry_seconds=settings.retry_seconds,
            window_start=settings.window_start,
            window_end=settings.window_end,
            contacts_in=contacts,
            now=self._wall(),
        )

    async def run_forever(self) -> None:
        with contextlib.suppress(StorageError):
            await self._outbound.reconcile(at_start=True)  # none of ours is in flight
        while True:
            try:
                await self.tick(self._wall())
            except StorageError as exc:
                log.error("campaign tick failed: %s", exc)
            # Each tick looks at the clock; an attempt ending frees a slot at once.
            settled = self._outbound.settled
            settled.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._tick_seconds):
                    await settled.wait()

    async def tick(self, now: datetime) -> int:
        """One pass over the running campaigns; returns how many calls were placed."""
        if self._next_reconcile is None or now >= self._next_reconcile:
            self._next_reconcile = now + timedelta(seconds=self._reconcile_seconds)
            await self._outbound.reconcile()
        if not self._outbound.config.enabled:
            return 0
        placed = 0
        for campaign in await self._store.campaigns_list(states=("running",)):
            placed += await self._tick_campaign(campaign, now)
            await self._store.finish_if_done(campaign.id, now)
        return placed

    async def _tick_campaign(self, campaign: Campaign, now: datetime) -> int:
        try:
            persona = self._outbound.persona(campaign.persona)
            self._outbound.carrier_for(persona)
        except OutboundError as exc:
            # Nothing it could dial would go out: claiming its contacts only to
            # release them again, tick after tick, helps nobody. An operator resumes it.
            log.error("campaign %s cannot dial (%s): paused", campaign.id, exc)
            await self._store.set_campaign_state(campaign.id, "paused", now, only_from=("running",))
            return 0
        slots = campaign.concurrency - await self._store.active_count(campaign.id)
        slots = min(slots, self._outbound.free_capacity(persona))
        day = day_start(now, persona.timezone)
        if campaign.daily_cap is not None:
            slots = min(
                slots, campaign.daily_cap - await self._store.started_since(campaign.id, day)
            )
        if slots <= 0:
            return 0
        window = CallingWindow.parse(campaign.window_start, campaign.window_end)
        placed = 0
        for contact in await self._store.due_contacts(campaign.id, now, limit=slots * 4 + 20):
            if placed >= slots:
                break
            if await self._outbound.is_dnc(contact.number):
                await self._store.skip_contact(contact.id, "dnc", now)
                continue
            zones = zones_for(contact.number, contact.time_zone)
            if not window_open(window, zones, now):
                opens = next_open(window, zones, now)
                if opens is None:
                    await self._store.skip_contact(contact.id, "no_calling_window", now)
                else:
                    await self._store.defer_contact(contact.id, opens, now)
                continue
            # The counts above are a first guess; the claim re-checks the campaign's
            # limits atomically, so replicas ticking together never overshoot them.
            attempt = await self._store.claim_contact(
                contact,
                campaign,
                now=now,
                replica=self._outbound.config.replica,
                carrier=self._outbound.carrier_name(persona),
                day_start=day,
            )
            if attempt == "taken":
                continue  # another replica claimed it
            if isinstance(attempt, str):
                break  # the campaign is full (or stopped) as the database sees it
            placed += 1
            try:
                await self._outbound.dial(attempt, persona)
            except OutboundError as exc:
                log.warning("campaign %s: contact %d not dialled: %s", campaign.id, contact.id, exc)
        return placed
