"""``RingingHangups``: in memory, and over a real redis-server's pub/sub (tests/realservers).

Each subscriber here hands what it hears to a recorder; the bridge's use of
it (withdraw the pending call) is tested end to end in
test_cluster_ringing_hangup.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from phonebridge.coordination.base import RingingHangups
from phonebridge.coordination.build import Coordination
from phonebridge.coordination.memory import MemoryRingingHangups
from phonebridge.coordination.redis_hangups import RedisRingingHangups

from ..realservers.redis_server import RedisServer
from .conftest import Replicas

BOUND = 10.0  # a liveness bound, never a timing assertion


class Heard:
    """Records the SIDs a subscriber handed over; ``boom`` makes the handler fail once."""

    def __init__(self, *, boom: str | None = None) -> None:
        self.sids: list[str] = []
        self._boom = boom
        self._changed = asyncio.Event()

    async def withdraw(self, call_sid: str) -> None:
        if call_sid == self._boom:
            self._boom = None
            raise RuntimeError("the call index is down")
        self.sids.append(call_sid)
        self._changed.set()

    async def wait_for(self, call_sid: str) -> None:
        async with asyncio.timeout(BOUND):
            while call_sid not in self.sids:
                self._changed.clear()
                await self._changed.wait()


@asynccontextmanager
async def subscribed(hangups: RingingHangups, heard: Heard) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(hangups.run_forever(heard.withdraw))
    await asyncio.sleep(0)  # its first step subscribes (in memory: registers its queue)
    try:
        await until_listening(hangups, True)
        yield task
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def until_listening(hangups: RingingHangups, listening: bool) -> None:
    async with asyncio.timeout(BOUND):
        while hangups.listening is not listening:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def redis_hangups(coordination: Coordination) -> RedisRingingHangups:
    assert isinstance(coordination.hangups, RedisRingingHangups)
    return coordination.hangups


# -- in memory ---------------------------------------------------------------------------


async def test_memory_delivers_to_every_running_subscriber_and_survives_a_failing_handler() -> None:
    hangups = MemoryRingingHangups()
    await hangups.publish("CA-nobody-listens")  # lost, like pub/sub with no subscriber
    first, second = Heard(boom="CA-boom"), Heard()
    async with subscribed(hangups, first), subscribed(hangups, second):
        await hangups.publish("CA-boom")  # the handler raises: logged, the subscriber goes on
        await hangups.publish("CA-1")
        await first.wait_for("CA-1")
        await second.wait_for("CA-1")
        assert first.sids == ["CA-1"]
        assert second.sids == ["CA-boom", "CA-1"]
    assert not hangups.listening  # cancelled subscribers leave
    await hangups.publish("CA-after")
    assert "CA-after" not in first.sids + second.sids


# -- Redis -------------------------------------------------------------------------------


async def test_redis_signal_reaches_every_replica_including_the_publisher(
    replicas: Replicas,
) -> None:
    a, b = redis_hangups(replicas("a")), redis_hangups(replicas("b"))
    heard_a, heard_b = Heard(), Heard()
    async with subscribed(a, heard_a), subscribed(b, heard_b):
        await b.publish("CA" + "1" * 32)
        await heard_a.wait_for("CA" + "1" * 32)
        await heard_b.wait_for("CA" + "1" * 32)


async def test_redis_ignores_messages_that_are_not_call_sids(
    replicas: Replicas, redis_server: RedisServer
) -> None:
    coordination = replicas("a")
    hangups = redis_hangups(coordination)
    heard = Heard()
    assert coordination.link is not None
    client = coordination.link.client
    async with subscribed(hangups, heard):
        await client.publish(hangups.channel, b"\xff\xfe not utf-8")
        await client.publish(hangups.channel, "x" * 500)
        await client.publish(hangups.channel, "")
        await hangups.publish("CA-good")
        await heard.wait_for("CA-good")
    assert heard.sids == ["CA-good"]  # in order: the bad ones came first and were dropped


async def test_redis_restart_the_subscriber_resubscribes_and_later_signals_arrive(
    replicas: Replicas, redis_server: RedisServer
) -> None:
    a, b = replicas("a"), replicas("b")
    listener, publisher = redis_hangups(a), redis_hangups(b)
    heard = Heard()
    async with subscribed(listener, heard):
        redis_server.stop()
        await until_listening(listener, False)
        # Calls go on: publishing with Redis down neither raises nor waits long.
        await publisher.publish("CA-while-down")
        assert a.metrics.errors.labels("hangup_listen")._value.get() >= 1
        assert b.metrics.errors.labels("hangup_publish")._value.get() >= 1

        redis_server.start()  # empty, same port
        await until_listening(listener, True)
        # The publisher's link fails fast until its tick notices Redis is back.
        assert b.ticker is not None
        await b.ticker.tick()
        await publisher.publish("CA-after-restart")
        await heard.wait_for("CA-after-restart")
    # What was published while nobody could listen is lost (the pending deadline frees it).
    assert heard.sids == ["CA-after-restart"]


async def test_a_hung_redis_is_noticed_by_the_unanswered_ping_and_recovered_from(
    replicas: Replicas, redis_server: RedisServer
) -> None:
    coordination = replicas("a")
    assert coordination.link is not None
    # Short intervals so the PING watchdog fires quickly (the default is 5 s).
    listener = RedisRingingHangups(
        coordination.link, clock=time.monotonic, retry_interval=0.1, ping_interval=0.2
    )
    heard = Heard()
    async with subscribed(listener, heard):
        redis_server.pause()  # connections stay open; nothing is answered
        try:
            await until_listening(listener, False)
        finally:
            redis_server.resume()
        await until_listening(listener, True)
        await redis_hangups(replicas("b")).publish("CA-after-hang")
        await heard.wait_for("CA-after-hang")
    assert coordination.metrics.errors.labels("hangup_listen")._value.get() >= 1
