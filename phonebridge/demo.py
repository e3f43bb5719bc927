"""``phonebridge demo``: one simulated phone call through the real bridge.

No keys, no GPU, no network: the bridge runs on loopback exactly as in
production, the model is the PersonaPlex simulator in speech mode (a test
double that answers with short recorded phrases), and the caller is the
Twilio phone simulator playing a recording shipped with the package. Exits 0
only if the call worked: answered, the caller heard the agent, the call ended
cleanly and its record says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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
            f"bridge listening on {bridge.url} (PersonaPlex simulator at "
            f"{bridge.self_hosted[0].url})"
        )
        print(f"calling {persona.name} on {persona.numbers[0]} from {DEMO_CALLER} ...")
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


def run(args: argparse.Namespace) -> int:
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
    first = report.first_agent_audio_after_start_s
    print(
        f"call {report.call_sid}: sent {report.frames_sent} frames of 20 ms, heard "
        f"{report.agent_audio_seconds:.1f} s of agent audio in {report.frames_received} messages"
    )
    if first is not None:
        print(f"first agent audio {first * 1000:.0f} ms after the stream started")
    print(f"what the caller heard: {result.heard}")
    if record is not None:
        print(
            f"call record: ended by {record.ended_by} ({record.end_reason}), "
            f"model socket open {record.model_socket_seconds or 0:.2f} s"
        )
        print(f"recording:  {record.recording_path}")
        print(f"transcript: {record.transcript_path}")
        transcript = Path(record.transcript_path) if record.transcript_path else None
        if transcript is not None and transcript.exists():
            said = [u["text"] for u in json.loads(transcript.read_text())["utterances"]]
            print("agent said: " + " / ".join(said))
