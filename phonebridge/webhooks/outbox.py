"""The webhook outbox: deliveries waiting to be sent, in the call index's database.

A call summary is queued here in the same transaction that makes the call's
row final (:meth:`phonebridge.storage.index.CallIndex.finish_call`), so a
restart (or ``kill -9``) loses none: the next process finds the row still
``pending`` and sends it with the same id, which the receiver sees as the
``Idempotency-Key`` (at least once, deduplicated by the receiver). The table
is :data:`phonebridge.storage.index.webhook_outbox`, made by migration 0006.

Replicas sharing a database never send one row at the same time: a sender
*claims* due rows (``claimed_until``) with one ``UPDATE ... RETURNING`` whose
candidates are picked ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (two senders
racing take disjoint rows, neither waits for the other); SQLite has one writer
at a time, so the same statement is atomic there without the clause. A claim
left by a crashed process simply runs out.

Every operation raises :class:`StorageError` when the database refuses it, as
the call index does; the delivery worker logs it and tries again later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from phonebridge.errors import StorageError
from phonebridge.storage.index import CallIndex, outbox_values, webhook_outbox
from phonebridge.storage.models import DeliveryState, OutboxEntry

T = TypeVar("T")
_FIELDS = (
    "id",
    "call_sid",
    "event",
    "url",
    "state",
    "attempts",
    "created_at",
    "next_attempt_at",
    "delivered_at",
    "last_status",
    "last_error",
)


def _entry(row: Any) -> OutboxEntry:
    values = {name: row._mapping[name] for name in _FIELDS}
    values["state"] = DeliveryState(values["state"])
    return OutboxEntry(**values)


class Outbox:
    """Async access to the ``webhook_outbox`` table; create with :meth:`Outbox.create`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    def of(cls, index: CallIndex) -> Outbox:
        """The outbox in ``index``'s database (its migrations made the table)."""
        return cls(index.engine)

    async def _run(self, operation: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        try:
            async with self._engine.begin() as conn:
                return await work(conn)
        except IntegrityError as exc:
            raise StorageError(f"webhook outbox: {operation}: conflicting row") from exc
        except (SQLAlchemyError, OSError) as exc:
            cause = getattr(exc, "orig", None) or exc
            raise StorageError(f"webhook outbox: {operation} failed: {cause}") from exc

    async def add(self, entry: OutboxEntry) -> None:
        """Queue one delivery on its own (calls queue theirs with their final row)."""

        async def insert(conn: AsyncConnection) -> None:
            await conn.execute(webhook_outbox.insert().values(**outbox_values(entry)))

        await self._run(f"add {entry.call_sid}", insert)

    async def claim_due(self, now: float, *, limit: int, hold_seconds: float) -> list[OutboxEntry]:
        """Pending rows due by ``now``, claimed for ``hold_seconds`` by this caller."""
        unclaimed = or_(
            webhook_outbox.c.claimed_until.is_(None), webhook_outbox.c.claimed_until < now
        )
        due = and_(
            webhook_outbox.c.state == str(DeliveryState.PENDING),
            webhook_outbox.c.next_attempt_at <= now,
            unclaimed,
        )
        candidates = (
            select(webhook_outbox.c.id)
            .where(due)
            .order_by(webhook_outbox.c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite renders nothing
        )
        statement = (
            update(webhook_outbox)
            .where(webhook_outbox.c.id.in_(candidates), due)
            .values(claimed_until=now + hold_seconds)
            .returning(*(webhook_outbox.c[name] for name in _FIELDS))
        )

        async def claim(conn: AsyncConnection) -> list[OutboxEntry]:
            rows = (await conn.execute(statement)).all()
            return sorted((_entry(row) for row in rows), key=lambda e: e.next_attempt_at)

        return await self._run("claim due", claim)

    async def record_attempt(
        self,
        entry_id: str,
        *,
        state: DeliveryState,
        attempts: int,
        next_attempt_at: float,
        delivered_at: float | None,
        status: int | None,
        error: str | None,
    ) -> None:
        values = {
            "state": str(state),
            "attempts": attempts,
            "next_attempt_at": next_attempt_at,
            "delivered_at": delivered_at,
            "last_status": status,
            "last_error": error,
            "claimed_until": None,
        }

        async def apply(conn: AsyncConnection) -> None:
            await conn.execute(
                update(webhook_outbox).where(webhook_outbox.c.id == entry_id).values(**values)
            )

        await self._run(f"record attempt {entry_id}", apply)

    async def for_call(self, call_sid: str) -> list[OutboxEntry]:
        async def fetch(conn: AsyncConnection) -> list[OutboxEntry]:
            rows = await conn.execute(
                select(webhook_outbox)
                .where(webhook_outbox.c.call_sid == call_sid)
                .order_by(webhook_outbox.c.created_at)
            )
            return [_entry(row) for row in rows]

        return await self._run(f"for call {call_sid}", fetch)

    async def next_due(self) -> float | None:
        """When the earliest pending row is due (None: nothing pending)."""

        async def fetch(conn: AsyncConnection) -> float | None:
            value = await conn.scalar(
                select(webhook_outbox.c.next_attempt_at)
                .where(webhook_outbox.c.state == str(DeliveryState.PENDING))
                .order_by(webhook_outbox.c.next_attempt_at)
                .limit(1)
            )
            return None if value is None else float(value)

        return await self._run("next due", fetch)
