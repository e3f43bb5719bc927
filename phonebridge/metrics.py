"""Prometheus metrics for the bridge (``GET /metrics``).

One :class:`BridgeMetrics` per app, on its own ``CollectorRegistry`` (no
global state: tests build as many apps as they like). What each metric means
when something goes wrong is explained in ``docs/deployment.md``.

Label values are only ever fixed vocabularies (provider names, end reasons,
directions): never a phone number, call SID or anything a caller controls,
which would both leak data and explode the series count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterator, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from phonebridge.models.redact import redact_url

# Per-frame work is tens to hundreds of microseconds; the buckets resolve that
# finely enough for the load benchmark to read p50/p99 from them (bench/
# bench_load.py interpolates within a bucket) and still show the milliseconds
# that would mean trouble.
_FRAME_BUCKETS = (
    *(n * 25e-6 for n in range(1, 13)),  # 25 µs steps to 300 µs
    400e-6,
    500e-6,
    750e-6,
    1e-3,
    1.5e-3,
    2e-3,
    3e-3,
    5e-3,
    10e-3,
    20e-3,
    50e-3,
)
# Event-loop lag: how late a 20 ms timer fires. Every frame the bridge handles
# waits this long on top of its processing.
_LOOP_LAG_BUCKETS = (
    *(n * 0.5e-3 for n in range(1, 11)),  # 0.5 ms steps to 5 ms
    7.5e-3,
    10e-3,
    15e-3,
    20e-3,
    30e-3,
    50e-3,
    100e-3,
    250e-3,
    1.0,
)
_CONNECT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60)
_FAST_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_LAG_BUCKETS = (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10)


class _LeaseCollector(Collector):
    """Reads the self-hosted pool at scrape time (no bookkeeping on the call path)."""

    def __init__(self, in_use: Callable[[], int], free: Callable[[], int]) -> None:
        self._in_use = in_use
        self._free = free

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "phonebridge_leases", "Self-hosted PersonaPlex servers by state", labels=["state"]
        )
        family.add_metric(["in_use"], self._in_use())
        family.add_metric(["free"], self._free())
        yield family


def server_label(url: str) -> str:
    """A self-hosted server's label value: its configured URL, credentials masked.

    A fixed vocabulary (PERSONAPLEX_URLS), the same on every replica, so
    series of different replicas join on it (deploy/prometheus/alerts.yml).
    """
    return redact_url(url)


class _LeaseHolderCollector(Collector):
    """Per server, 1 while this replica holds its lease: the alert's "nobody holds it"."""

    def __init__(
        self, replica: str, urls: Sequence[str], held: Callable[[], Collection[str]]
    ) -> None:
        self._replica = replica
        self._urls = tuple(urls)
        self._held = held

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "phonebridge_leases_held",
            "1 while this replica holds the self-hosted server's lease, else 0",
            labels=["replica", "server"],
        )
        held = self._held()
        for url in self._urls:
            family.add_metric([self._replica, server_label(url)], 1 if url in held else 0)
        yield family


class _CallIndexCollector(Collector):
    """The call index's health and the rows waiting for it (storage/row_spool.py)."""

    def __init__(self, up: Callable[[], bool], waiting: Callable[[], int]) -> None:
        self._up = up
        self._waiting = waiting

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "phonebridge_call_index_up",
            "0 since the call index (database) last failed to answer, 1 once it answers",
            1 if self._up() else 0,
        )
        yield GaugeMetricFamily(
            "phonebridge_call_rows_waiting",
            "Call rows spooled on this replica's disk until the call index takes them",
            self._waiting(),
        )


class _TaskCollector(Collector):
    """Counts the event loop's tasks at scrape time: a number that only grows is a leak.

    Every call owns a handful of tasks (clock, both directions, recorder) that
    its teardown must cancel; the soak benchmark checks this returns to its
    idle value. Scrapes run on the loop (``/metrics`` is an async route); a
    scrape from another thread has no loop to count, so it reports nothing
    rather than a wrong zero.
    """

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # no running loop in this thread
            return
        yield GaugeMetricFamily(
            "phonebridge_asyncio_tasks", "asyncio tasks alive in the bridge's event loop", tasks
        )


class BridgeMetrics:
    """Every metric the bridge exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # process_resident_memory_bytes, process_open_fds, CPU seconds...: on
        # our own registry (the default one is global state).
        ProcessCollector(registry=r)
        r.register(_TaskCollector())
        self.active_calls = Gauge(
            "phonebridge_active_calls", "Calls with a live media stream", registry=r
        )
        self.calls = Counter(
            "phonebridge_calls",
            "Calls by outcome (answered, busy, no_stream) and end reason",
            ["outcome", "end_reason"],
            registry=r,
        )
        self.ringing_hangups = Counter(
            "phonebridge_ringing_hangups",
            "Pending calls freed because their caller hung up while it rang, by where the "
            "hang-up was heard: local (this replica got the carrier's callback) or "
            "signalled (another replica got it and told every replica)",
            ["origin"],
            registry=r,
        )
        self.calls_refused = Counter(
            "phonebridge_calls_refused",
            "Calls the toll-fraud guard answered busy, by the limit that refused them "
            "(caller_rate, caller_concurrent, global_rate)",
            ["limit"],
            registry=r,
        )
        self.model_busy = Counter(
            "phonebridge_model_busy",
            "Opens a self-hosted server refused as busy or never answered (PROTOCOLS.md §2.5), "
            "by server: with no lease holder anywhere, its session lock is held by a dead client",
            ["server"],
            registry=r,
        )
        self.model_connect = Histogram(
            "phonebridge_model_connect_seconds",
            "WebSocket connect time to the model provider",
            ["provider"],
            buckets=_CONNECT_BUCKETS,
            registry=r,
        )
        self.model_ready = Histogram(
            "phonebridge_model_time_to_ready_seconds",
            "From opening the model session to the model listening (handshake)",
            ["provider"],
            buckets=_CONNECT_BUCKETS,
            registry=r,
        )
        self.frame_processing = Histogram(
            "phonebridge_frame_processing_seconds",
            "Bridge CPU time per frame: inbound = caller to model, outbound = model to caller",
            ["direction"],
            buckets=_FRAME_BUCKETS,
            registry=r,
        )
        self.silence_frames = Counter(
            "phonebridge_silence_frames",
            "20 ms silence frames the clock fed the model because Twilio sent nothing",
            registry=r,
        )
        self.dropped_frames = Counter(
            "phonebridge_dropped_frames",
            "Caller frames dropped after the model was ready because they arrived"
            " faster than real time (the pacer keeps the newest)",
            registry=r,
        )
        self.event_loop_lag = Histogram(
            "phonebridge_event_loop_lag_seconds",
            "How late a 20 ms timer fires on the event loop: the delay every frame waits",
            buckets=_LOOP_LAG_BUCKETS,
            registry=r,
        )
        self.playback_lag = Histogram(
            "phonebridge_twilio_playback_lag_seconds",
            "Mark round trip: audio queued at Twilio ahead of what the caller hears",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.hangup_to_model_closed = Histogram(
            "phonebridge_hangup_to_model_closed_seconds",
            "From the end of a call to its model socket closed (billing stops)",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.model_socket_seconds = Counter(
            "phonebridge_model_socket_seconds",
            "Seconds model sockets were open: what hosted providers bill",
            ["provider"],
            registry=r,
        )
        # Hand-offs to a human (calls/transfer/): what fired, and how each ended.
        self.transfer_triggers = Counter(
            "phonebridge_transfer_triggers",
            "Keypad and phrase triggers that fired, by trigger (dtmf, agent_phrase, "
            "caller_phrase) and action (transfer, opt_out, repeat)",
            ["trigger", "action"],
            registry=r,
        )
        self.transfers = Counter(
            "phonebridge_transfers",
            "Hand-offs to a human by mode (cold, warm) and result (dialled, accepted, "
            "declined, unanswered, abandoned, failed)",
            ["mode", "result"],
            registry=r,
        )

    def watch_leases(self, in_use: Callable[[], int], free: Callable[[], int]) -> None:
        self.registry.register(_LeaseCollector(in_use, free))

    def watch_call_index(self, up: Callable[[], bool], waiting: Callable[[], int]) -> None:
        """``phonebridge_call_index_up`` and ``phonebridge_call_rows_waiting``."""
        self.registry.register(_CallIndexCollector(up, waiting))

    def watch_lease_holders(
        self, replica: str, urls: Sequence[str], held: Callable[[], Collection[str]]
    ) -> None:
        """``phonebridge_leases_held{replica,server}`` from the pool, read at scrape time."""
        self.registry.register(_LeaseHolderCollector(replica, urls, held))

    def render(self) -> bytes:
        return generate_latest(self.registry)
