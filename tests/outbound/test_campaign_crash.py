"""`kill -9` of `phonebridge serve` mid-campaign, then a restart: every contact is
dialled at most once per attempt, and the campaign finishes (real subprocess, the
fake Twilio Calls API as the carrier, PersonaPlex simulators as the models)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import Counter
from pathlib import Path

import httpx

from phonebridge.local import DEMO_AUTH_TOKEN, PUBLIC_URL
from phonebridge.outbound.store import OutboundStore
from phonebridge.simulators.personaplex.server import PersonaPlexSimulator
from phonebridge.simulators.twilio_api import Callee, FakeTwilioApi
from phonebridge.storage.index import CallIndex

from ..e2e.conftest import serve_process
from .carriers import ACCOUNT, CALLER_ID, eventually

NUMBERS = [f"+1416555{n:04d}" for n in range(600, 612)]


async def test_kill_9_mid_campaign_then_restart(tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        models = [
            await stack.enter_async_context(
                PersonaPlexSimulator(flavour="self-hosted", reply="echo", conditioning_delay=0.05)
            )
            for _ in range(3)
        ]
        serve = serve_process(tmp_path, ",".join(m.url for m in models))
        api = await stack.enter_async_context(
            FakeTwilioApi(
                account_sid=ACCOUNT,
                auth_token=DEMO_AUTH_TOKEN,
                bridge_public_url=PUBLIC_URL,
                bridge_local_url=serve.url,
                callees={n: Callee("human", talk=1.5) for n in NUMBERS},
            )
        )
        serve.env.update(
            {
                "PHONEBRIDGE_OUTBOUND_ENABLED": "1",
                "PHONEBRIDGE_OUTBOUND_COUNTRIES": "1",
                "PHONEBRIDGE_OUTBOUND_CALLER_IDS": CALLER_ID,
                "TWILIO_ACCOUNT_SID": ACCOUNT,
                "TWILIO_API_URL": api.url,
            }
        )
        process = await serve.start()
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                created = await http.post(
                    serve.url + "/api/campaigns",
                    json={
                        "name": "crash",
                        "persona": "citysan",
                        "concurrency": 3,
                        "max_attempts": 1,
                        "window_start": "00:00",
                        "window_end": "24:00",
                        "contacts": [{"number": n} for n in NUMBERS],
                    },
                )
                assert created.status_code == 201, created.text
                cid = created.json()["id"]
                await eventually(lambda: len(api.created) >= 4, within=30)
                process.send_signal(signal.SIGKILL)
                await process.wait()
                killed_at = len(api.created)
                assert killed_at < len(NUMBERS)
                await asyncio.sleep(0.5)
                process = await serve.start()

                async def finished() -> bool:
                    body = (await http.get(f"{serve.url}/api/campaigns/{cid}")).json()
                    return bool(body["state"] == "finished")

                await eventually(finished, within=60)
        finally:
            if process.returncode is None:
                process.terminate()
                await process.wait()
        await api.wait_ended()
        called = Counter(call.to for call in api.created)
        assert called == Counter(NUMBERS)  # everyone, exactly once (one attempt each)
        assert api.max_active <= 3
        async with await CallIndex.create(
            f"sqlite+aiosqlite:///{serve.data / 'phonebridge.db'}"
        ) as index:
            store = OutboundStore(index.engine)
            attempts = await store.attempts_for(campaign_id=cid)
            contacts = await store.contacts_of(cid)
        assert all(a.state == "ended" for a in attempts)
        assert Counter(a.to_number for a in attempts if a.call_sid) == Counter(NUMBERS)
        assert {c.state for c in contacts} == {"done"}
