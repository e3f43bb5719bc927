"""``phonebridge demo``: one simulated phone call through the real bridge.

No keys, no GPU, no network: the bridge runs on loopback exactly as in
production, the model is the PersonaPlex simulator in speech mode (a test
double that answers with short recorded phrases), and the caller is the
Twilio phone simulator playing a recording shipped with the package. Exits 0
only if the call worked: answered, the caller heard the agent, the call ended
cleanly and its record says so.

The output is a short summary of the call: what the agent said, where the
recording and transcript are, and whether it worked. The bridge's own logs
(uvicorn's access lines, the simulators' and libraries' INFO lines) are shown
only with ``--verbose``; warnings and errors always are.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from phonebridge.local import DEMO_AUTH_TOKEN, SimulatorOptions, local_bridge
from phonebridge.personas.loader import load_personas
from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.phone.report import DialReport
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import CallRecord

DEMO_PERSONA = "citysan"
DEMO_CALLER = "+15005550006"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run one simulated call through the real bridge (no keys, no GPU)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--personas", type=Path, default=Path("personas"))
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--persona", default=DEMO_PERSONA, help="persona id to call")
    parser.add_argument("--json", action="store_true", help="print the phone's JSON report")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show the bridge's logs (access lines, INFO from the bridge and libraries)",
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="after the call, keep the bridge running so the dashboard can be browsed",
    )
    parser.add_argument(
        "--browser",
        action="store_true",
        help="place no phone call: start the bridge and print the Talk page's URL "
        "(talk to a persona from this machine's browser)",
    )
    parser.set_defaults(func=run)


@dataclass(frozen=True, slots=True)
class DemoResult:
    report: DialReport
    record: CallRecord | None
    heard: Path
    dashboard: str

    @property
    def problems(self) -> list[str]:
        problems: list[str] = []
        report = self.report
        if report.webhook_status != 200:
            problems.append(f"webhook answered {report.webhook_status}")
        if report.protocol_errors:
            problems.append(f"protocol errors: {report.protocol_errors}")
        if report.frames_received == 0:
            problems.append("the caller heard nothing from the agent")
        if self.record is None:
            problems.append("no call record")
        elif self.record.end_reason != "caller_hangup":
            problems.append(f"call ended with {self.record.end_reason}: {self.record.error}")
        return problems


async def run_demo(
    *, personas_dir: Path, data_dir: Path, persona_id: str, keep_serving: bool = False
) -> DemoResult:
    book = await asyncio.to_thread(load_personas, personas_dir)
    persona = book.by_id(persona_id)
    if persona is None or not persona.numbers:
        raise SystemExit(f"demo: no persona {persona_id!r} with a number in {personas_dir}")
    caller_audio = Path(str(files("phonebridge.assets").joinpath("demo_caller.wav")))
    heard = data_dir / "demo-heard.wav"
    async with local_bridge(
        personas_dir=personas_dir,
        data_dir=data_dir,
        simulators=SimulatorOptions(reply="speech", conditioning_delay=0.5),
    ) as bridge:
        print(
            f"bridge on {bridge.url}, model: the PersonaPlex simulator at "
            f"{bridge.self_hosted[0].url} (a test double)"
        )
        print(
            f"calling {persona.name} on {persona.numbers[0]} from {DEMO_CALLER} "
            f"(the caller plays a recorded question) ...",
            flush=True,
        )
        report = await dial(
            bridge.url,
            to=persona.numbers[0],
            from_=DEMO_CALLER,
            auth_token=DEMO_AUTH_TOKEN,
            public_url=bridge.public_url,
            audio=caller_audio,
            out=heard,
        )
        # The call row is completed when the bridge's teardown finishes, a
        # moment after the phone hung up.
        index = await CallIndex.create(bridge.settings.effective_database_url)
        try:
            record = None
            for _ in range(100):
                record = await index.get(report.call_sid)
                if record is not None and record.ended_at is not None:
                    break
                await asyncio.sleep(0.05)
        finally:
            await index.close()
        result = DemoResult(report, record, heard, bridge.url + "/")
        if keep_serving:
            print_summary(result)
            print(f"dashboard: {result.dashboard} (Ctrl-C to stop)")
            print(f"overview:  {result.dashboard}overview")
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
    return result


async def serve_browser_demo(*, personas_dir: Path, data_dir: Path, persona_id: str) -> None:
    """The bridge and simulators on loopback until Ctrl-C; the Talk page is the caller.

    No dashboard token is set, so the dashboard answers loopback clients only
    (web/auth.py): a browser on this machine may call, nothing else can.
    """
    async with local_bridge(
        personas_dir=personas_dir,
        data_dir=data_dir,
        simulators=SimulatorOptions(reply="speech", conditioning_delay=0.5),
    ) as bridge:
        print(f"Talk page: {bridge.url}/talk?persona={persona_id}", flush=True)
        print(f"dashboard: {bridge.url}/ (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()


def quiet_logs(verbose: bool) -> None:
    """Without ``verbose``, only warnings and errors reach the log handlers.

    The summary says what matters; uvicorn's access lines and the INFO lines of
    the bridge, the simulators and httpx would bury it. The root logger's level
    is enough: uvicorn runs with ``log_config=None`` (phonebridge/local.py), so
    its loggers have no level of their own and inherit it.
    """
    if not verbose:
        logging.getLogger().setLevel(logging.WARNING)


def run(args: argparse.Namespace) -> int:
    quiet_logs(args.verbose)
    args.data.mkdir(parents=True, exist_ok=True)
    if args.browser:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                serve_browser_demo(
                    personas_dir=args.personas, data_dir=args.data, persona_id=args.persona
                )
            )
        return 0
    try:
        result = asyncio.run(
            run_demo(
                personas_dir=args.personas,
                data_dir=args.data,
                persona_id=args.persona,
                keep_serving=args.serve,
            )
        )
    except KeyboardInterrupt:
        return 0
    if args.json:
        print(result.report.to_json())
    if not args.serve:
        print_summary(result)
        print(
            "dashboard: the bridge stopped with the demo; run `phonebridge demo --serve` "
            "to browse this call at its dashboard URL"
        )
    problems = result.problems
    for problem in problems:
        print(f"demo FAILED: {problem}", file=sys.stderr)
    if not problems:
        print("demo OK")
    return 1 if problems else 0


def print_summary(result: DemoResult) -> None:
    report, record = result.report, result.record
    print()
    if record is not None:
        duration = record.duration_seconds or 0.0
        print(
            f"call {report.call_sid}: {record.end_reason}, ended by the {record.ended_by} "
            f"after {duration:.1f} s"
        )
    else:
        print(f"call {report.call_sid}: no call record")
    first = report.first_agent_audio_after_start_s
    heard = (
        f"  caller heard {report.agent_audio_seconds:.1f} s of agent audio "
        f"in {report.frames_received} messages"
    )
    if first is not None:
        heard += f", the first {first * 1000:.0f} ms after the answer"
    print(heard)
    print(f"  caller sent  {report.frames_sent} frames of 20 ms")
    if record is not None:
        print(
            f"  model socket open {record.model_socket_seconds or 0:.2f} s on "
            f"{record.provider or 'no provider'}"
        )
        transcript = Path(record.transcript_path) if record.transcript_path else None
        if transcript is not None and transcript.exists():
            said = [u["text"] for u in json.loads(transcript.read_text())["utterances"]]
            print("agent said: " + " / ".join(said))
    print(f"what the caller heard: {result.heard}")
    if record is not None:
        print(f"recording:  {record.recording_path}")
        print(f"transcript: {record.transcript_path}")
