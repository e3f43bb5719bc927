"""When to open the model session on an outbound call: at dial time or at answer.

Runs the real bridge (in-process, ``local_bridge``) with PersonaPlex simulators
whose conditioning (prompt + voice warm-up before the first 0x00 handshake,
PROTOCOLS.md §2.3) takes ``--conditioning`` seconds, and the fake Twilio Calls
API (a test double) whose callee rings ``--ring`` seconds and then talks.
For each mode, ``--calls`` calls one after another; reported per mode:

- *silence after answer*: stream start -> the callee hears the persona's first
  audio (the phone simulator's ``first_agent_audio_after_start_s``);
- *model-socket seconds*: the call row's ``model_socket_seconds`` (what a hosted
  provider bills), and the part of it spent while the phone rang.

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_outbound_open.py``
(numbers go to docs/outbound.md, never to test assertions).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
from pathlib import Path

import httpx

from phonebridge.local import DEMO_AUTH_TOKEN, PUBLIC_URL, SimulatorOptions, local_bridge
from phonebridge.simulators.phone.routes import Routes
from phonebridge.simulators.twilio_api import Callee, FakeTwilioApi
from phonebridge.storage.index import CallIndex

REPO = Path(__file__).resolve().parents[1]
ACCOUNT = "AC" + "0" * 31 + "1"
CALLEE = "+14165550111"
PERSONA = """\
name: Bench caller
provider: personaplex
voice: NATF1
prompt: You work for CitySan and call customers to remind them of their pickup day.
outbound:
  open_model: {mode}
"""


async def run_mode(mode: str, args: argparse.Namespace, work: Path) -> dict[str, float]:
    personas = work / f"personas-{mode}"
    shutil.copytree(REPO / "personas", personas)
    (personas / "bench.yaml").write_text(PERSONA.format(mode=mode))
    api = FakeTwilioApi(
        account_sid=ACCOUNT,
        auth_token=DEMO_AUTH_TOKEN,
        bridge_public_url=PUBLIC_URL,
        bridge_local_url="http://127.0.0.1:1",
        callees={CALLEE: Callee("human", ring=args.ring, talk=args.talk)},
    )
    silences: list[float] = []
    sockets: list[float] = []
    async with (
        api,
        local_bridge(
            personas_dir=personas,
            data_dir=work / f"data-{mode}",
            simulators=SimulatorOptions(reply="echo", conditioning_delay=args.conditioning),
            outbound_enabled=True,
            outbound_countries=(1,),
            outbound_caller_ids=("+14165550100",),
            twilio_account_sid=ACCOUNT,
            twilio_api_url=api.url,
            caller_max_calls_per_hour=0,
            caller_max_concurrent=0,
        ) as bridge,
        httpx.AsyncClient(timeout=30) as http,
    ):
        api.routes = Routes(PUBLIC_URL, bridge.url)
        index = await CallIndex.create(bridge.settings.effective_database_url)
        try:
            for _ in range(args.calls):
                before = len(api.created)
                response = await http.post(
                    bridge.url + "/api/calls", json={"to": CALLEE, "persona": "bench"}
                )
                response.raise_for_status()
                while len(api.created) == before:  # noqa: ASYNC110 - polls the fake
                    await asyncio.sleep(0.01)
                await api.wait_ended()
                call = api.created[-1]
                assert call.report is not None
                if call.report.first_agent_audio_after_start_s is not None:
                    silences.append(call.report.first_agent_audio_after_start_s)
                for _ in range(200):
                    row = await index.get(call.sid)
                    if row is not None and row.model_socket_seconds is not None:
                        sockets.append(row.model_socket_seconds)
                        break
                    await asyncio.sleep(0.05)
        finally:
            await index.close()
    return {
        "silence_p50": statistics.median(silences),
        "silence_max": max(silences),
        "socket_p50": statistics.median(sockets),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--ring", type=float, default=3.0, help="seconds the phone rings")
    parser.add_argument("--talk", type=float, default=2.0, help="seconds the callee stays")
    parser.add_argument("--conditioning", type=float, default=1.5, help="model warm-up, s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(
            f"ring {args.ring:g} s, talk {args.talk:g} s, model warm-up "
            f"{args.conditioning:g} s, {args.calls} calls per mode"
        )
        print("| open_model | silence after answer p50 / max | model-socket s per call p50 |")
        print("|---|---|---|")
        for mode in ("answer", "dial"):
            r = await run_mode(mode, args, Path(tmp))
            print(
                f"| {mode} | {r['silence_p50']:.2f} s / {r['silence_max']:.2f} s "
                f"| {r['socket_p50']:.2f} s |"
            )


if __name__ == "__main__":
    asyncio.run(main())
