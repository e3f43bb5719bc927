"""A loopback cluster: a real Caddy in front of real ``phonebridge serve`` replicas.

Each replica is a ``phonebridge serve`` subprocess with its own
``PHONEBRIDGE_REPLICA_ID``, port and data directory, and its own self-hosted
PersonaPlex simulators (TEST DOUBLES, in this test's event loop): until leases
are shared cluster-wide, no two replicas may share a server. The call index is
one database for all replicas: ``database_url`` (a shared SQLite file unless
given) and ``extra_env`` are parameters, so the same harness runs on a real
PostgreSQL and Redis once their fixtures exist. ``shared_data_dir`` gives every
replica one data directory (a shared volume), so any replica can serve any
call's recording; with object storage, turn it off and pass its settings in
``extra_env`` (each replica's own directory is then just its spool).

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
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from phonebridge.local import DEMO_AUTH_TOKEN, PUBLIC_URL
from phonebridge.simulators.personaplex import PersonaPlexSimulator
from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.phone.report import DialReport
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import CallRecord

from ..conftest import REPO
from ..realservers.caddy_server import CaddyServer, free_port

SHAKSHUKA = "+14165550102"  # self-hosted, no overflow: every call needs a replica's server
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
    """One ``phonebridge serve`` subprocess with its own id, port, data and servers."""

    replica_id: str
    port: int
    data: Path
    env: dict[str, str]
    simulators: list[PersonaPlexSimulator]
    args: tuple[str, ...]
    process: asyncio.subprocess.Process | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

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
                    raise RuntimeError(f"replica {self.replica_id} exited at start")
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

    async def wait(self) -> int:
        assert self.process is not None
        async with asyncio.timeout(STOP_SECONDS):
            return await self.process.wait()

    async def stop(self) -> int:
        """SIGTERM and wait for the exit code."""
        self.terminate()
        return await self.wait()

    async def metrics(self) -> str:
        async with httpx.AsyncClient() as http:
            return (await http.get(self.url + "/metrics")).text

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
    """The replicas, the Caddy in front of them, and the shared call index."""

    replicas: list[Replica]
    caddy: CaddyServer
    database_url: str
    reports: list[DialReport] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.caddy.url

    def replica(self, replica_id: str) -> Replica:
        return next(r for r in self.replicas if r.replica_id == replica_id)

    async def dial(self, *, from_: str, audio: bytes, tail: float = 0.3) -> DialReport:
        """One call from the Twilio phone simulator, through Caddy."""
        report = await dial(
            self.url,
            to=SHAKSHUKA,
            from_=from_,
            auth_token=DEMO_AUTH_TOKEN,
            public_url=PUBLIC_URL,
            audio=audio,
            tail=tail,
        )
        self.reports.append(report)
        return report

    async def api(self, path: str) -> httpx.Response:
        """GET the dashboard API through Caddy (any ready replica answers)."""
        async with httpx.AsyncClient() as http:
            return await http.get(
                self.url + path, headers={"Authorization": f"Bearer {DASHBOARD_TOKEN}"}
            )

    async def record(self, call_sid: str) -> CallRecord | None:
        index = await CallIndex.create(self.database_url)
        try:
            return await index.get(call_sid)
        finally:
            await index.close()


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
    replicas: int = 3,
    servers_per_replica: int = 2,
    database_url: str | None = None,
    shared_data_dir: bool = False,
    extra_env: Mapping[str, str] | None = None,
    serve_args: Sequence[str] = ("--drain-seconds", "5"),
    conditioning_delay: float = 0.05,
) -> AsyncIterator[Cluster]:
    """Start the cluster; on exit stop every replica it started and Caddy."""
    personas = directory / "personas"
    shutil.copytree(REPO / "personas", personas)
    shared = directory / "shared"
    shared.mkdir(parents=True)
    database = database_url or f"sqlite+aiosqlite:///{shared / 'phonebridge.db'}"
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("PHONEBRIDGE_", "TWILIO_"))
    }
    async with contextlib.AsyncExitStack() as stack:
        members: list[Replica] = []
        for n in range(replicas):
            replica_id = f"pb-{n}"
            simulators = [
                await stack.enter_async_context(
                    PersonaPlexSimulator(
                        flavour="self-hosted", reply="echo", conditioning_delay=conditioning_delay
                    )
                )
                for _ in range(servers_per_replica)
            ]
            port = free_port()
            data = shared / "data" if shared_data_dir else directory / replica_id / "data"
            env = {
                **inherited,
                "PHONEBRIDGE_PUBLIC_URL": PUBLIC_URL,
                "TWILIO_AUTH_TOKEN": DEMO_AUTH_TOKEN,
                "PHONEBRIDGE_REPLICA_ID": replica_id,
                "PERSONAPLEX_URLS": ",".join(sim.url for sim in simulators),
                "POLARGRID_API_KEY": "pg_unused",
                "FAL_KEY": "fal-unused",
                "PHONEBRIDGE_PERSONAS": str(personas),
                "PHONEBRIDGE_DATA": str(data),
                "DATABASE_URL": database,
                "PHONEBRIDGE_PORT": str(port),
                "PHONEBRIDGE_LOG_LEVEL": "INFO",
                "PHONEBRIDGE_DASHBOARD_TOKEN": DASHBOARD_TOKEN,
                **(extra_env or {}),
            }
            members.append(Replica(replica_id, port, data, env, simulators, tuple(serve_args)))
        caddy_port = free_port()
        caddy = CaddyServer(
            loopback_cluster_site(caddy_port, {r.replica_id: r.port for r in members}),
            directory / "caddy",
            port=caddy_port,
        )
        cluster = Cluster(members, caddy, database)
        # The schema exists before the replicas start, as a migration job would
        # leave it: replicas racing to create the tables on a fresh database fail.
        index = await CallIndex.create(database)
        await index.close()
        try:
            await asyncio.gather(*(replica.start() for replica in members))
            await caddy.start()
            await wait_until_proxy_sees_all_ready(cluster)
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
