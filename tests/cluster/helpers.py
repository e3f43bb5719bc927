"""A loopback cluster: a real Caddy in front of real ``phonebridge serve`` replicas.

Each replica is a ``phonebridge serve`` subprocess with its own
``PHONEBRIDGE_REPLICA_ID``, port and data directory (its spool). What they
share is what a production cluster shares (tests/cluster/conftest.py starts
it): one real PostgreSQL as the call index, one real redis-server for leases,
guard, replay memory and heartbeats, moto's S3 (a TEST DOUBLE of the S3 API)
for recordings and transcripts, and ONE pool of self-hosted PersonaPlex
simulators (TEST DOUBLES, in this test's event loop) used by every replica:
``PERSONAPLEX_URLS`` is the same on each, and only the Redis leases keep two
replicas off one server. The simulators record any second concurrent
connection to a server as the failure it would be (PROTOCOLS.md §2.1).

Nothing creates the schema before the replicas start: they start together on
a fresh database and Alembic, under PostgreSQL's advisory lock, lets one of
them migrate while the others wait.

Caddy's site is the loopback twin of deploy/Caddyfile.cluster: the replica
segment of ``/twilio/r/<id>/`` picks the upstream through a ``map`` (Kubernetes
uses ``<id>.<headless service>``), a ``<Connect action>`` whose replica does
not answer goes to any healthy replica, and everything else goes to a replica
whose ``/readyz`` passes (Caddy's active health checks).

Calls are placed by the Twilio phone simulator (a TEST DOUBLE) through Caddy:
it signs the public URLs the bridge wrote and connects to Caddy's address.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from phonebridge.errors import StorageError
from phonebridge.local import DEMO_AUTH_TOKEN, DEMO_FAL_KEY, DEMO_POLARGRID_KEY, PUBLIC_URL
from phonebridge.simulators.personaplex import PersonaPlexSimulator
from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.phone.report import DialReport
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import CallRecord

from ..conftest import REPO
from ..realservers.caddy_server import CaddyServer, free_port

SHAKSHUKA = "+14165550102"  # self-hosted, no overflow: every call needs a server of the pool
CITYSAN = "+14165550101"  # self-hosted, overflow to PolarGrid
SHAKSHUKA_FALLBACK = "Sorry, we can't take your order by phone right now."
# How often Caddy polls /readyz; a replica's --withdraw-seconds must outlast it.
HEALTH_INTERVAL = "200ms"
NOTHING_LISTENS = "127.0.0.1:1"  # the upstream of an unknown replica id: a dial error
STARTUP_SECONDS = 30.0
STOP_SECONDS = 30.0
SETTLE_SECONDS = 10.0
# Behind a proxy every request comes from the proxy's (loopback) address, so a
# cluster always sets a dashboard token (web/auth.py).
DASHBOARD_TOKEN = "cluster-dashboard-token"


def loopback_cluster_site(port: int, replicas: Mapping[str, int]) -> str:
    """The Caddy site for ``replicas`` (id -> port): deploy/Caddyfile.cluster on loopback."""
    pool = " ".join(f"127.0.0.1:{replica_port}" for replica_port in replicas.values())
    routes = "\n".join(f"\t\t{rid} 127.0.0.1:{rport}" for rid, rport in replicas.items())
    return f"""http://127.0.0.1:{port} {{
	request_body {{
		max_size 1MB
	}}
	@action path_regexp replica ^/twilio/r/([a-z0-9-]+)/stream-ended$
	@replica path_regexp replica ^/twilio/r/([a-z0-9-]+)/
	map {{re.replica.1}} {{replica_upstream}} {{
{routes}
		default {NOTHING_LISTENS}
	}}

	# A <Connect action>: ask the replica holding the call; if it does not
	# answer (a bodyless probe, so the form is still unread), handle_errors
	# below gives it to any healthy replica, which answers the fallback.
	handle @action {{
		forward_auth {{replica_upstream}} {{
			uri /healthz
		}}
		reverse_proxy {{replica_upstream}}
	}}
	# A media stream: only the replica holding the call can take it.
	handle @replica {{
		reverse_proxy {{replica_upstream}} {{
			flush_interval -1
		}}
	}}
	# Voice webhooks, dashboard, API: any replica that is ready.
	handle {{
		reverse_proxy {pool} {{
			lb_policy round_robin
			# Caddy 2.6 retries a request with a body on another upstream only
			# if it buffered it: a replica that died since the last health poll
			# costs a retry, not a 502 to Twilio.
			buffer_requests
			lb_try_duration 3s
			health_uri /readyz
			health_interval {HEALTH_INTERVAL}
			health_timeout 1s
		}}
	}}
	handle_errors {{
		@action_orphaned {{
			expression {{http.error.status_code}} == 502
			path_regexp ^/twilio/r/[a-z0-9-]+/stream-ended$
		}}
		handle @action_orphaned {{
			reverse_proxy {pool} {{
				buffer_requests
				lb_try_duration 3s
				health_uri /readyz
				health_interval {HEALTH_INTERVAL}
				health_timeout 1s
			}}
		}}
		respond {{http.error.status_code}}
	}}
}}
"""


@dataclass
class Replica:
    """One ``phonebridge serve`` subprocess with its own id, port and data (spool) directory."""

    replica_id: str
    port: int
    data: Path
    env: dict[str, str]
    args: tuple[str, ...]
    process: asyncio.subprocess.Process | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def log(self) -> str:
        """The newest log of this replica (for failure messages)."""
        path = self.data.parent.parent / "logs" / f"{self.replica_id}.{self.starts}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def start(self) -> None:
        """Start it and wait until it answers /readyz."""
        self.starts += 1
        logs = self.data.parent.parent / "logs"
        logs.mkdir(exist_ok=True)
        log = (logs / f"{self.replica_id}.{self.starts}.log").open("wb")
        with log:
            self.process = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "phonebridge.cli", "serve", *self.args),
                env=self.env,
                stdout=log,
                stderr=log,
            )
        async with httpx.AsyncClient() as http, asyncio.timeout(STARTUP_SECONDS):
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"replica {self.replica_id} exited at start:\n{self.log()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(self.url + "/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """``kill -9``: no drain, no teardown, no records finished."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    def terminate(self) -> None:
        """SIGTERM: the graceful stop (withdraw, drain, exit)."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)

    async def wait(self, within: float = STOP_SECONDS) -> int:
        """Its exit code; a replica still running after ``within`` fails with its log."""
        assert self.process is not None
        try:
            async with asyncio.timeout(within):
                return await self.process.wait()
        except TimeoutError:
            tail = self.log()[-4000:]
            raise AssertionError(
                f"replica {self.replica_id} still running after {within} s:\n{tail}"
            ) from None

    async def stop(self) -> int:
        """SIGTERM and wait for the exit code."""
        self.terminate()
        return await self.wait()

    async def get(self, path: str) -> httpx.Response:
        """GET from this replica directly (not through the proxy)."""
        return await self.get_with(path, {})

    async def get_with(self, path: str, headers: Mapping[str, str]) -> httpx.Response:
        async with httpx.AsyncClient() as http:
            return await http.get(
                self.url + path,
                headers={"Authorization": f"Bearer {DASHBOARD_TOKEN}", **headers},
            )

    async def metrics(self) -> str:
        return (await self.get("/metrics")).text

    async def active_calls(self) -> float:
        return metric(await self.metrics(), "phonebridge_active_calls")

    async def wait_for_free_servers(self, free: int) -> None:
        """Until this replica sees ``free`` servers of the shared pool free.

        A fresh (or restarted) Redis quarantines the pool for one lease TTL,
        and a replica learns the pool's state on its tick (every TTL/3).
        """

        async def enough() -> bool:
            return metric(await self.metrics(), "phonebridge_leases", 'state="free"') >= free

        await until(enough, SETTLE_SECONDS)

    async def settle(self) -> str:
        """Wait until no call is live and no lease is held; the metrics then.

        A caller's ``stop`` returns before the bridge's teardown has finished
        (it closes the model socket and writes the row just after).
        """
        async with asyncio.timeout(SETTLE_SECONDS):
            while True:
                text = await self.metrics()
                if metric(text, "phonebridge_active_calls") == 0 and (
                    metric(text, "phonebridge_leases", 'state="in_use"') == 0
                ):
                    return text
                await asyncio.sleep(0.05)


@dataclass
class Cluster:
    """The replicas, the Caddy in front of them, and what they share."""

    replicas: list[Replica]
    caddy: CaddyServer
    database_url: str
    index: CallIndex
    simulators: list[PersonaPlexSimulator]
    """The one self-hosted pool every replica leases from."""
    polargrid: PersonaPlexSimulator
    """The hosted overflow (a PolarGrid simulator)."""
    reports: list[DialReport] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.caddy.url

    def replica(self, replica_id: str) -> Replica:
        return next(r for r in self.replicas if r.replica_id == replica_id)

    async def dial(
        self,
        *,
        from_: str,
        audio: bytes,
        tail: float = 0.3,
        to: str = SHAKSHUKA,
        call_sid: str | None = None,
        via: str | None = None,
    ) -> DialReport:
        """One call from the Twilio phone simulator, through Caddy (``via``: another address)."""
        report = await dial(
            via or self.url,
            to=to,
            from_=from_,
            auth_token=DEMO_AUTH_TOKEN,
            public_url=PUBLIC_URL,
            audio=audio,
            tail=tail,
            call_sid=call_sid,
        )
        self.reports.append(report)
        return report

    async def api(self, path: str, headers: Mapping[str, str] | None = None) -> httpx.Response:
        """GET the dashboard API through Caddy (any ready replica answers)."""
        async with httpx.AsyncClient() as http:
            return await http.get(
                self.url + path,
                headers={"Authorization": f"Bearer {DASHBOARD_TOKEN}", **(headers or {})},
            )

    async def record(self, call_sid: str) -> CallRecord | None:
        return await self.index.get(call_sid)

    async def ended_record(self, call_sid: str, *, within: float = SETTLE_SECONDS) -> CallRecord:
        """The call's row once it has ended (teardown writes it just after the caller left)."""
        async with asyncio.timeout(within):
            while True:
                with contextlib.suppress(StorageError):
                    record = await self.index.get(call_sid)
                    if record is not None and record.ended_at is not None:
                        return record
                await asyncio.sleep(0.05)

    def sessions(self) -> int:
        """Model sessions the shared pool has served so far."""
        return sum(len(sim.connections) for sim in self.simulators)

    def second_connections(self) -> list[object]:
        """Every time a server of the pool had two connections at once (must stay empty)."""
        return [record for sim in self.simulators for record in sim.second_connections]


async def until(check: Callable[[], Awaitable[bool]], within: float) -> None:
    """Poll ``check`` until it is true (TimeoutError after ``within`` seconds)."""
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


def replica_of(report: DialReport) -> str:
    """The replica id in the stream URL the bridge wrote for this call."""
    match = re.search(r"/twilio/r/([a-z0-9-]+)/media$", report.stream_url or "")
    assert match is not None, report.stream_url
    return match.group(1)


def metric(text: str, name: str, labels: str = "") -> float:
    """One sample of a Prometheus text exposition (``labels``: ``state="in_use"``)."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{wanted} not in the metrics")


@contextlib.asynccontextmanager
async def loopback_cluster(
    directory: Path,
    *,
    database_url: str,
    shared_env: Mapping[str, str],
    replicas: int = 3,
    pool_size: int = 6,
    extra_env: Mapping[str, str] | None = None,
    serve_args: Sequence[str] = ("--drain-seconds", "5"),
    conditioning_delay: float = 0.05,
) -> AsyncIterator[Cluster]:
    """Start the cluster; on exit stop every replica it started and Caddy.

    ``shared_env`` points every replica at the shared Redis and object store
    (conftest.SharedParts.env); ``pool_size`` is how many self-hosted servers
    the one pool has.
    """
    personas = directory / "personas"
    shutil.copytree(REPO / "personas", personas)
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PHONEBRIDGE_", "TWILIO_", "AWS_", "DATABASE_URL"))
    }
    async with contextlib.AsyncExitStack() as stack:
        pool = [
            await stack.enter_async_context(
                PersonaPlexSimulator(
                    flavour="self-hosted", reply="echo", conditioning_delay=conditioning_delay
                )
            )
            for _ in range(pool_size)
        ]
        # The hosted providers' simulators (TEST DOUBLES): a persona with
        # overflow (CITYSAN) reaches PolarGrid here, never the internet.
        polargrid = await stack.enter_async_context(
            PersonaPlexSimulator(
                flavour="polargrid",
                reply="echo",
                conditioning_delay=conditioning_delay,
                api_key=DEMO_POLARGRID_KEY,
            )
        )
        fal = await stack.enter_async_context(
            PersonaPlexSimulator(flavour="fal", reply="echo", api_key=DEMO_FAL_KEY)
        )
        members: list[Replica] = []
        for n in range(replicas):
            replica_id = f"pb-{n}"
            port = free_port()
            data = directory / replica_id / "data"
            env = {
                **inherited,
                "PHONEBRIDGE_PUBLIC_URL": PUBLIC_URL,
                "TWILIO_AUTH_TOKEN": DEMO_AUTH_TOKEN,
                "PHONEBRIDGE_REPLICA_ID": replica_id,
                "PERSONAPLEX_URLS": ",".join(sim.url for sim in pool),
                "POLARGRID_API_KEY": DEMO_POLARGRID_KEY,
                "POLARGRID_BASE_URL": polargrid.url,
                "FAL_KEY": DEMO_FAL_KEY,
                "FAL_BASE_URL": fal.url,
                "PHONEBRIDGE_PERSONAS": str(personas),
                "PHONEBRIDGE_DATA": str(data),
                "DATABASE_URL": database_url,
                "PHONEBRIDGE_PORT": str(port),
                "PHONEBRIDGE_LOG_LEVEL": "INFO",
                "PHONEBRIDGE_DASHBOARD_TOKEN": DASHBOARD_TOKEN,
                **shared_env,
                **(extra_env or {}),
            }
            members.append(Replica(replica_id, port, data, env, tuple(serve_args)))
        caddy_port = free_port()
        caddy = CaddyServer(
            loopback_cluster_site(caddy_port, {r.replica_id: r.port for r in members}),
            directory / "caddy",
            port=caddy_port,
        )
        # Started together on a fresh database: the first to take the advisory
        # lock migrates, the others wait and find the schema at head.
        try:
            await asyncio.gather(*(replica.start() for replica in members))
            index = await CallIndex.create(database_url, migrate=False)
            stack.push_async_callback(index.close)
            cluster = Cluster(members, caddy, database_url, index, pool, polargrid)
            await caddy.start()
            await wait_until_proxy_sees_all_ready(cluster)
            # A fresh Redis lends no server for one lease TTL (its quarantine).
            await asyncio.gather(*(r.wait_for_free_servers(pool_size) for r in members))
            yield cluster
        finally:
            await asyncio.gather(
                *(replica.stop() for replica in members if replica.running),
                return_exceptions=True,
            )
            for replica in members:
                if replica.running:
                    assert replica.process is not None
                    replica.process.kill()
                    await replica.process.wait()
            await caddy.stop()


async def wait_until_proxy_sees_all_ready(cluster: Cluster) -> None:
    """Caddy counts an upstream healthy until a poll fails: wait until it routes at all."""
    async with httpx.AsyncClient() as http, asyncio.timeout(STARTUP_SECONDS):
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(cluster.url + "/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
