"""The operator overview's figures (issue 13, "Operator overview"), from the call index.

Route (behind the dashboard auth dependency, like every history route)::

    GET /api/stats/overview?from=&to=&bucket=hour|day

``from``/``to`` are ISO dates or datetimes (as in ``/api/calls``: a bare ``to``
date includes that day; naive times are UTC). Without them the range is the
last 24 hours by the hour, or the last 30 days by the day. The range is
widened to whole UTC buckets and the answer says which range it covers; its
buckets add up to its totals. What each figure means is in
:mod:`phonebridge.storage.stats`.

Failures, decided: a malformed time or bucket is 422; a range that ends before
it starts, has more buckets than can be drawn or holds more calls than one
overview scans is 422 with a sentence saying what to change; an unreadable
index is 503.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from phonebridge.errors import StorageError
from phonebridge.storage.index import CallIndex
from phonebridge.storage.stats import BUCKET_SECONDS, Overview, Percentiles
from phonebridge.storage.stats import overview as compute_overview
from phonebridge.web.api import parse_time_bound
from phonebridge.web.auth import AuthDependency

log = logging.getLogger(__name__)

DEFAULT_SPAN: dict[str, timedelta] = {"hour": timedelta(hours=24), "day": timedelta(days=30)}


class PercentilesOut(BaseModel):
    p50: float | None
    p95: float | None
    count: int


class KindsOut(BaseModel):
    calls: int
    answered: int
    busy: int
    refused: int
    unanswered: int


class TotalsOut(KindsOut):
    minutes: float
    model_socket_seconds: float
    first_agent_audio: PercentilesOut


class BucketOut(KindsOut):
    start: datetime
    minutes: float
    model_socket_seconds: dict[str, float]
    """By provider."""
    first_agent_audio: PercentilesOut


class ProviderOut(BaseModel):
    provider: str
    calls: int
    model_socket_seconds: float


class EndReasonOut(BaseModel):
    end_reason: str
    calls: int


class OverviewOut(BaseModel):
    from_: datetime = Field(serialization_alias="from")
    """The range covered, widened to whole buckets: ``from <= started_at < to``."""
    to: datetime
    bucket: Literal["hour", "day"]
    bucket_seconds: int
    totals: TotalsOut
    buckets: list[BucketOut]
    providers: list[ProviderOut]
    """Most model-socket seconds first."""
    end_reasons: list[EndReasonOut]
    """Most calls first."""


def _percentiles(value: Percentiles) -> PercentilesOut:
    return PercentilesOut(p50=value.p50, p95=value.p95, count=value.count)


def overview_out(result: Overview) -> OverviewOut:
    kinds = result.kinds
    buckets = [
        BucketOut(
            start=b.start,
            calls=b.calls,
            answered=b.kinds["answered"],
            busy=b.kinds["busy"],
            refused=b.kinds["refused"],
            unanswered=b.kinds["unanswered"],
            minutes=b.minutes,
            model_socket_seconds=dict(b.socket_seconds),
            first_agent_audio=_percentiles(p),
        )
        for b, p in zip(result.buckets, result.bucket_first_audio, strict=True)
    ]
    providers = sorted(result.socket_seconds.items(), key=lambda item: (-item[1], item[0]))
    reasons = sorted(result.end_reasons.items(), key=lambda item: (-item[1], item[0]))
    return OverviewOut(
        from_=result.start,
        to=result.end,
        bucket=result.bucket,
        bucket_seconds=BUCKET_SECONDS[result.bucket],
        totals=TotalsOut(
            calls=result.calls,
            answered=kinds["answered"],
            busy=kinds["busy"],
            refused=kinds["refused"],
            unanswered=kinds["unanswered"],
            minutes=result.minutes,
            model_socket_seconds=sum(result.socket_seconds.values()),
            first_agent_audio=_percentiles(result.first_audio),
        ),
        buckets=buckets,
        providers=[
            ProviderOut(provider=name, calls=result.provider_calls[name], model_socket_seconds=s)
            for name, s in providers
        ],
        end_reasons=[EndReasonOut(end_reason=name, calls=n) for name, n in reasons],
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


def stats_router(
    index: CallIndex,
    auth_dependency: AuthDependency,
    *,
    clock: Callable[[], datetime] = _utc_now,
) -> APIRouter:
    """The ``/api/stats`` routes, every one behind ``auth_dependency``."""
    router = APIRouter(prefix="/api/stats", dependencies=[Depends(auth_dependency)])

    @router.get("/overview", response_model=OverviewOut)
    async def overview(
        *,
        since: Annotated[str | None, Query(alias="from")] = None,
        until: Annotated[str | None, Query(alias="to")] = None,
        bucket: Literal["hour", "day"] = "hour",
    ) -> OverviewOut:
        end = parse_time_bound(until, end_of_day=True) or clock()
        start = parse_time_bound(since, end_of_day=False) or end - DEFAULT_SPAN[bucket]
        try:
            result = await compute_overview(index.engine, start, end, bucket)
        except ValueError as exc:  # an empty range, or RangeTooLarge
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        except StorageError as exc:
            log.warning("call index unavailable for the overview: %s", exc)
            raise HTTPException(status_code=503, detail="call index unavailable") from exc
        return overview_out(result)

    return router


__all__ = ["OverviewOut", "overview_out", "stats_router"]
