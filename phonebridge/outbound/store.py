"""Outbound state in the call index: attempts, campaigns, contacts, do-not-call.

Durable facts live in SQL (ARCHITECTURE.md, "Replicas"), so a restart or a
replica crash resumes a campaign from the database. The tables are the call
index's (declared in :mod:`phonebridge.storage.index`, made by migration 0006)
and the store works on the index's engine: one database, one pool.

**Calling nobody twice.** A contact is *claimed* before its REST request, in
one transaction (:meth:`OutboundStore.claim_contact`):

1. ``UPDATE campaigns ... WHERE id = :id AND state = 'running' RETURNING
   concurrency``: the campaign row's lock (PostgreSQL) or the database write
   lock (SQLite) is taken *first*, so claims of one campaign are serialised
   across every replica, and a paused or cancelled campaign claims nothing;
2. the campaign's open attempts (and today's, for the daily cap) are counted
   under that lock: the concurrency limit holds for the whole cluster;
3. ``UPDATE campaign_contacts ... WHERE id = :id AND state = 'queued' AND
   attempts = :seen RETURNING id`` moves the contact to ``dialing``: a row
   only one transaction can still match (PostgreSQL re-checks the WHERE
   against the committed row after waiting for its lock, so a second replica
   gets no row back);
4. the attempt row is inserted.

Only the replica whose transaction returned the contact dials it. The
attempt row records the claim before any money is spent: a crash between the
claim and Twilio's answer leaves an attempt in state ``claimed`` without a
call SID, which recovery resolves by *looking the call up* at the carrier,
never by dialling again blindly (:mod:`phonebridge.outbound.service`).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from phonebridge.errors import StorageError
from phonebridge.storage.index import campaign_contacts as contacts
from phonebridge.storage.index import campaigns
from phonebridge.storage.index import dnc_numbers as dnc
from phonebridge.storage.index import outbound_attempts as attempts

T = TypeVar("T")

OPEN_ATTEMPT_STATES = ("claimed", "dialing", "answered")
RETRYABLE_OUTCOMES = frozenset({"no_answer", "busy"})


@dataclass(frozen=True, slots=True)
class Attempt:
    id: str
    call_sid: str | None
    campaign_id: str | None
    contact_id: int | None
    attempt: int
    to_number: str
    from_number: str
    persona: str
    placed_by: str
    variables: dict[str, str]
    state: str
    outcome: str | None
    answered_by: str | None
    error: str | None
    replica: str
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    carrier: str | None
    """The carrier that dials it (None: claimed before revision 0009 recorded it)."""

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        for key in ("created_at", "updated_at", "ended_at"):
            data[key] = data[key].isoformat() if data[key] is not None else None
        return data


@dataclass(frozen=True, slots=True)
class Campaign:
    id: str
    name: str
    persona: str
    from_number: str
    created_by: str
    state: str  # running | paused | cancelled | finished
    concurrency: int
    daily_cap: int | None
    max_attempts: int
    retry_seconds: float
    window_start: str
    window_end: str
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        data["created_at"] = self.created_at.isoformat()
        data["updated_at"] = self.updated_at.isoformat()
        return data


@dataclass(frozen=True, slots=True)
class Contact:
    id: int
    campaign_id: str
    position: int
    number: str
    variables: dict[str, str]
    time_zone: str | None
    state: str
    attempts: int
    next_attempt_at: datetime
    outcome: str | None


@dataclass(frozen=True, slots=True)
class NewContact:
    number: str
    variables: Mapping[str, str]
    time_zone: str | None = None


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


_ATTEMPT_ID = re.compile(r"^oa_[0-9a-f]{24}$")


def is_attempt_id(value: str) -> bool:
    """Whether ``value`` has the shape :func:`new_id` gives attempts (callbacks carry
    one; anything else is refused before the store is asked)."""
    return _ATTEMPT_ID.fullmatch(value) is not None


def _attempt(row: Any) -> Attempt:
    values = dict(row._mapping)
    values["variables"] = json.loads(values["variables"] or "{}")
    return Attempt(**values)


def _campaign(row: Any) -> Campaign:
    return Campaign(**dict(row._mapping))


def _contact(row: Any) -> Contact:
    values = dict(row._mapping)
    values.pop("updated_at")
    values["variables"] = json.loads(values["variables"] or "{}")
    return Contact(**values)


ClaimRefused = Literal["taken", "full", "stopped"]
"""Why :meth:`OutboundStore.claim_contact` claimed nothing: another claim took the
contact; the campaign is at its concurrency or daily cap; it is no longer running."""


class OutboundStore:
    """Async access to the outbound tables on the call index's engine
    (``OutboundStore(index.engine)``; :meth:`CallIndex.create` migrated them)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _run(self, operation: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        try:
            async with self._engine.begin() as conn:
                return await work(conn)
        except StorageError:
            raise
        except IntegrityError as exc:
            raise StorageError(f"outbound store: {operation}: conflicting row: {exc.orig}") from exc
        except (SQLAlchemyError, OSError) as exc:
            cause = getattr(exc, "orig", None) or exc
            raise StorageError(f"outbound store: {operation} failed: {cause}") from exc

    # -- attempts --------------------------------------------------------------

    async def add_attempt(
        self,
        *,
        to_number: str,
        from_number: str,
        persona: str,
        placed_by: str,
        variables: Mapping[str, str],
        now: datetime,
        replica: str,
        carrier: str,
    ) -> Attempt:
        """A one-off call's attempt, claimed (written before the REST request)."""
        attempt_id = new_id("oa_")
        values = _attempt_values(
            attempt_id=attempt_id,
            campaign_id=None,
            contact_id=None,
            attempt_no=1,
            to_number=to_number,
            from_number=from_number,
            persona=persona,
            placed_by=placed_by,
            variables=variables,
            now=now,
            replica=replica,
            carrier=carrier,
        )

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(insert(attempts).values(**values))

        await self._run("add_attempt", work)
        found = await self.attempt(attempt_id)
        assert found is not None
        return found

    async def claim_contact(
        self,
        contact: Contact,
        campaign: Campaign,
        *,
        now: datetime,
        replica: str,
        carrier: str,
        day_start: datetime | None = None,
    ) -> Attempt | ClaimRefused:
        """Claim ``contact`` for one attempt, atomically with the campaign's limits
        (the module docstring says how); ``day_start`` counts the daily cap from it."""
        attempt_id = new_id("oa_")
        values = _attempt_values(
            attempt_id=attempt_id,
            campaign_id=campaign.id,
            contact_id=contact.id,
            attempt_no=contact.attempts + 1,
            to_number=contact.number,
            from_number=campaign.from_number,
            persona=campaign.persona,
            placed_by=f"campaign:{campaign.id}",
            variables=contact.variables,
            now=now,
            replica=replica,
            carrier=carrier,
        )

        async def work(conn: AsyncConnection) -> ClaimRefused | None:
            # 1. The campaign's row first: claims of one campaign queue here.
            limits = (
                await conn.execute(
                    update(campaigns)
                    .where(campaigns.c.id == campaign.id, campaigns.c.state == "running")
                    .values(updated_at=now)
                    .returning(campaigns.c.concurrency, campaigns.c.daily_cap)
                )
            ).first()
            if limits is None:
                return "stopped"
            # 2. Its limits, counted under that lock.
            open_now = await conn.scalar(
                select(func.count())
                .select_from(attempts)
                .where(
                    attempts.c.campaign_id == campaign.id,
                    attempts.c.state.in_(list(OPEN_ATTEMPT_STATES)),
                )
            )
            if int(open_now or 0) >= limits.concurrency:
                return "full"
            cap, since = limits.daily_cap, day_start
            if cap is not None and since is not None:
                started = await _started_since(conn, campaign.id, since)
                if started >= cap:
                    return "full"
            # 3. The contact, if it is still queued as this process saw it.
            claimed = (
                await conn.execute(
                    update(contacts)
                    .where(
                        contacts.c.id == contact.id,
                        contacts.c.state == "queued",
                        contacts.c.attempts == contact.attempts,
                    )
                    .values(state="dialing", attempts=contact.attempts + 1, updated_at=now)
                    .returning(contacts.c.id)
                )
            ).first()
            if claimed is None:
                return "taken"
            # 4. The attempt, in the same transaction.
            await conn.execute(insert(attempts).values(**values))
            return None

        refused = await self._run(f"claim contact {contact.id}", work)
        if refused is not None:
            return refused
        found = await self.attempt(attempt_id)
        assert found is not None
        return found

    async def attempt(self, attempt_id: str) -> Attempt | None:
        async def work(conn: AsyncConnection) -> Attempt | None:
            row = (await conn.execute(select(attempts).where(attempts.c.id == attempt_id))).first()
            return None if row is None else _attempt(row)

        return await self._run("attempt", work)

    async def attempt_by_sid(self, call_sid: str) -> Attempt | None:
        async def work(conn: AsyncConnection) -> Attempt | None:
            row = (
                await conn.execute(select(attempts).where(attempts.c.call_sid == call_sid))
            ).first()
            return None if row is None else _attempt(row)

        return await self._run("attempt_by_sid", work)

    async def attempts_for(
        self,
        *,
        campaign_id: str | None = None,
        states: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> list[Attempt]:
        conditions: list[Any] = []
        if campaign_id is not None:
            conditions.append(attempts.c.campaign_id == campaign_id)
        if states is not None:
            conditions.append(attempts.c.state.in_(list(states)))

        async def work(conn: AsyncConnection) -> list[Attempt]:
            rows = await conn.execute(
                select(attempts).where(*conditions).order_by(attempts.c.created_at).limit(limit)
            )
            return [_attempt(row) for row in rows]

        return await self._run("attempts_for", work)

    async def set_dialing(self, attempt_id: str, call_sid: str, now: datetime) -> None:
        """The carrier accepted the call: record its SID (the claim is now resolvable)."""

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(
                update(attempts)
                .where(attempts.c.id == attempt_id, attempts.c.state == "claimed")
                .values(call_sid=call_sid, state="dialing", updated_at=now)
            )

        await self._run(f"set_dialing {attempt_id}", work)

    async def set_answered(self, attempt_id: str, now: datetime) -> None:
        async def work(conn: AsyncConnection) -> None:
            await conn.execute(
                update(attempts)
                .where(attempts.c.id == attempt_id, attempts.c.state.in_(["claimed", "dialing"]))
                .values(state="answered", updated_at=now)
            )

        await self._run(f"set_answered {attempt_id}", work)

    async def set_answered_by(self, attempt_id: str, answered_by: str, now: datetime) -> None:
        async def work(conn: AsyncConnection) -> None:
            await conn.execute(
                update(attempts)
                .where(attempts.c.id == attempt_id)
                .values(answered_by=answered_by, updated_at=now)
            )

        await self._run(f"set_answered_by {attempt_id}", work)

    async def set_outcome_hint(self, attempt_id: str, outcome: str, now: datetime) -> None:
        """Remember how an answered call is ending (voicemail, opted_out) before it ends."""

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(
                update(attempts)
                .where(attempts.c.id == attempt_id, attempts.c.state != "ended")
                .values(outcome=outcome, updated_at=now)
            )

        await self._run(f"set_outcome_hint {attempt_id}", work)

    async def finish_attempt(
        self,
        attempt_id: str,
        outcome: str,
        now: datetime,
        *,
        error: str | None = None,
        call_sid: str | None = None,
    ) -> bool:
        """End the attempt (once: False if it had ended) and settle its contact:
        a retryable outcome with attempts left queues the contact again after the
        campaign's spacing; anything else is the contact's final outcome.
        An outcome already hinted (voicemail, opted_out) wins over ``completed``.
        """

        async def work(conn: AsyncConnection) -> bool:
            row = (await conn.execute(select(attempts).where(attempts.c.id == attempt_id))).first()
            if row is None or row.state == "ended":
                return False
            final = row.outcome if (outcome == "answered" and row.outcome) else outcome
            values: dict[str, Any] = {
                "state": "ended",
                "outcome": final,
                "ended_at": now,
                "updated_at": now,
            }
            if error is not None:
                values["error"] = error
            if call_sid is not None and row.call_sid is None:
                values["call_sid"] = call_sid
            result = await conn.execute(
                update(attempts)
                .where(attempts.c.id == attempt_id, attempts.c.state != "ended")
                .values(**values)
            )
            if result.rowcount != 1:
                return False
            if row.contact_id is not None:
                await _settle_contact(conn, row.contact_id, row.campaign_id, final, now)
            return True

        return await self._run(f"finish_attempt {attempt_id}", work)

    async def release_claim(self, attempt_id: str, now: datetime, error: str) -> None:
        """The REST request never placed the call: end the attempt as ``not_placed``
        and give the contact its attempt back (nobody was dialled)."""

        async def work(conn: AsyncConnection) -> None:
            row = (await conn.execute(select(attempts).where(attempts.c.id == attempt_id))).first()
            if row is None or row.state != "claimed":
                return
            await conn.execute(
                update(attempts)
                .where(attempts.c.id == attempt_id)
                .values(
                    state="ended", outcome="not_placed", error=error, ended_at=now, updated_at=now
                )
            )
            if row.contact_id is not None:
                await conn.execute(
                    update(contacts)
                    .where(contacts.c.id == row.contact_id, contacts.c.state == "dialing")
                    .values(state="queued", attempts=contacts.c.attempts - 1, updated_at=now)
                )

        await self._run(f"release_claim {attempt_id}", work)

    # -- campaigns -------------------------------------------------------------

    async def create_campaign(
        self,
        *,
        name: str,
        persona: str,
        from_number: str,
        created_by: str,
        concurrency: int,
        daily_cap: int | None,
        max_attempts: int,
        retry_seconds: float,
        window_start: str,
        window_end: str,
        contacts_in: Sequence[NewContact],
        now: datetime,
    ) -> Campaign:
        campaign_id = new_id("cp_")

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(
                insert(campaigns).values(
                    id=campaign_id,
                    name=name,
                    persona=persona,
                    from_number=from_number,
                    created_by=created_by,
                    state="running",
                    concurrency=concurrency,
                    daily_cap=daily_cap,
                    max_attempts=max_attempts,
                    retry_seconds=retry_seconds,
                    window_start=window_start,
                    window_end=window_end,
                    created_at=now,
                    updated_at=now,
                )
            )
            if contacts_in:
                await conn.execute(
                    insert(contacts),
                    [
                        {
                            "campaign_id": campaign_id,
                            "position": position,
                            "number": c.number,
                            "variables": json.dumps(dict(c.variables)),
                            "time_zone": c.time_zone,
                            "state": "queued",
                            "attempts": 0,
                            "next_attempt_at": now,
                            "updated_at": now,
                        }
                        for position, c in enumerate(contacts_in)
                    ],
                )

        await self._run("create_campaign", work)
        found = await self.campaign(campaign_id)
        assert found is not None
        return found

    async def campaign(self, campaign_id: str) -> Campaign | None:
        async def work(conn: AsyncConnection) -> Campaign | None:
            row = (
                await conn.execute(select(campaigns).where(campaigns.c.id == campaign_id))
            ).first()
            return None if row is None else _campaign(row)

        return await self._run("campaign", work)

    async def campaigns_list(self, *, states: Sequence[str] | None = None) -> list[Campaign]:
        conditions = [] if states is None else [campaigns.c.state.in_(list(states))]

        async def work(conn: AsyncConnection) -> list[Campaign]:
            rows = await conn.execute(
                select(campaigns).where(*conditions).order_by(campaigns.c.created_at.desc())
            )
            return [_campaign(row) for row in rows]

        return await self._run("campaigns_list", work)

    async def set_campaign_state(
        self, campaign_id: str, state: str, now: datetime, *, only_from: Sequence[str]
    ) -> bool:
        async def work(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                update(campaigns)
                .where(campaigns.c.id == campaign_id, campaigns.c.state.in_(list(only_from)))
                .values(state=state, updated_at=now)
            )
            if state == "cancelled" and result.rowcount == 1:
                await conn.execute(
                    update(contacts)
                    .where(contacts.c.campaign_id == campaign_id, contacts.c.state == "queued")
                    .values(state="cancelled", updated_at=now)
                )
            return bool(result.rowcount == 1)

        return await self._run(f"set_campaign_state {campaign_id}", work)

    async def finish_if_done(self, campaign_id: str, now: datetime) -> bool:
        """Mark a running campaign finished when no contact is queued or being dialled."""

        async def work(conn: AsyncConnection) -> bool:
            left = await conn.scalar(
                select(func.count())
                .select_from(contacts)
                .where(
                    contacts.c.campaign_id == campaign_id,
                    contacts.c.state.in_(["queued", "dialing"]),
                )
            )
            if left:
                return False
            result = await conn.execute(
                update(campaigns)
                .where(campaigns.c.id == campaign_id, campaigns.c.state == "running")
                .values(state="finished", updated_at=now)
            )
            return bool(result.rowcount == 1)

        return await self._run(f"finish_if_done {campaign_id}", work)

    async def due_contacts(self, campaign_id: str, now: datetime, limit: int) -> list[Contact]:
        async def work(conn: AsyncConnection) -> list[Contact]:
            rows = await conn.execute(
                select(contacts)
                .where(
                    contacts.c.campaign_id == campaign_id,
                    contacts.c.state == "queued",
                    contacts.c.next_attempt_at <= now,
                )
                .order_by(contacts.c.next_attempt_at, contacts.c.position)
                .limit(limit)
            )
            return [_contact(row) for row in rows]

        return await self._run("due_contacts", work)

    async def contacts_of(self, campaign_id: str) -> list[Contact]:
        async def work(conn: AsyncConnection) -> list[Contact]:
            rows = await conn.execute(
                select(contacts)
                .where(contacts.c.campaign_id == campaign_id)
                .order_by(contacts.c.position)
            )
            return [_contact(row) for row in rows]

        return await self._run("contacts_of", work)

    async def skip_contact(self, contact_id: int, outcome: str, now: datetime) -> None:
        """Never dial this contact (do-not-call, no calling window, invalid number)."""

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(
                update(contacts)
                .where(contacts.c.id == contact_id, contacts.c.state == "queued")
                .values(state="skipped", outcome=outcome, updated_at=now)
            )

        await self._run(f"skip_contact {contact_id}", work)

    async def defer_contact(self, contact_id: int, until: datetime, now: datetime) -> None:
        async def work(conn: AsyncConnection) -> None:
            await conn.execute(
                update(contacts)
                .where(contacts.c.id == contact_id, contacts.c.state == "queued")
                .values(next_attempt_at=until, updated_at=now)
            )

        await self._run(f"defer_contact {contact_id}", work)

    async def active_count(self, campaign_id: str | None = None) -> int:
        """Attempts claimed, ringing or in progress (all replicas)."""
        conditions: list[Any] = [attempts.c.state.in_(list(OPEN_ATTEMPT_STATES))]
        if campaign_id is not None:
            conditions.append(attempts.c.campaign_id == campaign_id)

        async def work(conn: AsyncConnection) -> int:
            count = await conn.scalar(select(func.count()).select_from(attempts).where(*conditions))
            return int(count or 0)

        return await self._run("active_count", work)

    async def started_since(self, campaign_id: str, since: datetime) -> int:
        """Attempts placed (not counting those never placed) since ``since``: the daily cap."""

        async def work(conn: AsyncConnection) -> int:
            return await _started_since(conn, campaign_id, since)

        return await self._run("started_since", work)

    async def progress(self, campaign_id: str) -> dict[str, Any]:
        async def work(conn: AsyncConnection) -> dict[str, Any]:
            by_state = await conn.execute(
                select(contacts.c.state, func.count())
                .where(contacts.c.campaign_id == campaign_id)
                .group_by(contacts.c.state)
            )
            by_outcome = await conn.execute(
                select(contacts.c.outcome, func.count())
                .where(contacts.c.campaign_id == campaign_id, contacts.c.outcome.is_not(None))
                .group_by(contacts.c.outcome)
            )
            placed = await conn.scalar(
                select(func.count())
                .select_from(attempts)
                .where(attempts.c.campaign_id == campaign_id)
            )
            states = {str(state): int(n) for state, n in by_state}
            return {
                "contacts": sum(states.values()),
                "states": states,
                "outcomes": {str(o): int(n) for o, n in by_outcome},
                "attempts": int(placed or 0),
            }

        return await self._run("progress", work)

    # -- do-not-call -----------------------------------------------------------

    async def add_dnc(
        self, number: str, source: str, now: datetime, note: str | None = None
    ) -> bool:
        """Add ``number``; False if it was already listed."""

        async def work(conn: AsyncConnection) -> bool:
            if await conn.scalar(select(dnc.c.number).where(dnc.c.number == number)):
                return False
            await conn.execute(
                insert(dnc).values(number=number, source=source, note=note, added_at=now)
            )
            return True

        return await self._run("add_dnc", work)

    async def remove_dnc(self, number: str) -> bool:
        async def work(conn: AsyncConnection) -> bool:
            result = await conn.execute(dnc.delete().where(dnc.c.number == number))
            return bool(result.rowcount)

        return await self._run("remove_dnc", work)

    async def is_dnc(self, number: str) -> bool:
        async def work(conn: AsyncConnection) -> bool:
            return bool(await conn.scalar(select(dnc.c.number).where(dnc.c.number == number)))

        return await self._run("is_dnc", work)

    async def dnc_list(self) -> list[dict[str, Any]]:
        async def work(conn: AsyncConnection) -> list[dict[str, Any]]:
            rows = await conn.execute(select(dnc).order_by(dnc.c.added_at))
            return [
                {
                    "number": r.number,
                    "source": r.source,
                    "note": r.note,
                    "added_at": r.added_at.isoformat(),
                }
                for r in rows
            ]

        return await self._run("dnc_list", work)


def _attempt_values(
    *,
    attempt_id: str,
    campaign_id: str | None,
    contact_id: int | None,
    attempt_no: int,
    to_number: str,
    from_number: str,
    persona: str,
    placed_by: str,
    variables: Mapping[str, str],
    now: datetime,
    replica: str,
    carrier: str,
) -> dict[str, Any]:
    return {
        "id": attempt_id,
        "call_sid": None,
        "campaign_id": campaign_id,
        "contact_id": contact_id,
        "attempt": attempt_no,
        "to_number": to_number,
        "from_number": from_number,
        "persona": persona,
        "placed_by": placed_by,
        "variables": json.dumps(dict(variables)),
        "state": "claimed",
        "replica": replica,
        "carrier": carrier,
        "created_at": now,
        "updated_at": now,
    }


async def _settle_contact(
    conn: AsyncConnection, contact_id: int, campaign_id: str | None, outcome: str, now: datetime
) -> None:
    contact = (await conn.execute(select(contacts).where(contacts.c.id == contact_id))).first()
    campaign = (await conn.execute(select(campaigns).where(campaigns.c.id == campaign_id))).first()
    if contact is None or campaign is None or contact.state != "dialing":
        return
    retry = outcome in RETRYABLE_OUTCOMES and campaign.state in ("running", "paused")
    if retry and contact.attempts < campaign.max_attempts:
        values: dict[str, Any] = {
            "state": "queued",
            "outcome": outcome,
            "next_attempt_at": now + timedelta(seconds=campaign.retry_seconds),
        }
    else:
        values = {"state": "done", "outcome": outcome}
    await conn.execute(
        update(contacts).where(contacts.c.id == contact_id).values(updated_at=now, **values)
    )


async def _started_since(conn: AsyncConnection, campaign_id: str, since: datetime) -> int:
    count = await conn.scalar(
        select(func.count())
        .select_from(attempts)
        .where(
            attempts.c.campaign_id == campaign_id,
            attempts.c.created_at >= since,
            and_(attempts.c.outcome.is_(None) | (attempts.c.outcome != "not_placed")),
        )
    )
    return int(count or 0)
