"""The transfer policy against a recording stand-in for the call (no sockets)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from phonebridge.calls.outcome import CallEndReason, CallOutcome, Handoff
from phonebridge.calls.policy import TransferFacts
from phonebridge.calls.transfer.policy import REPEAT_HINT, TransferPolicy
from phonebridge.calls.transfer.warm import (
    DialRequest,
    Dismiss,
    HumanListener,
    TransferResult,
)
from phonebridge.errors import PhonebridgeError
from phonebridge.metrics import BridgeMetrics
from phonebridge.personas.schema import Persona


@dataclass
class Call:
    """Records what the policy asks of its call (CallControls)."""

    at: float = 0.0
    ended: list[tuple[CallEndReason, str, Handoff | None]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    held: list[bytes] = field(default_factory=list)
    resumed: int = 0
    told: list[str] = field(default_factory=list)
    transfers: list[TransferFacts] = field(default_factory=list)
    injection: bool = True

    def now(self) -> float:
        return self.at

    def end(self, reason: CallEndReason, detail: str = "", handoff: Handoff | None = None) -> None:
        self.ended.append((reason, detail, handoff))

    def note(self, kind: str, detail: str) -> None:
        self.notes.append((kind, detail))

    def hold(self, loop: bytes) -> None:
        self.held.append(loop)

    def resume(self) -> None:
        self.resumed += 1

    async def tell_model(self, text: str) -> bool:
        self.told.append(text)
        return self.injection

    def record_transfer(self, facts: TransferFacts) -> None:
        self.transfers.append(facts)


class Dialer:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.requests: list[DialRequest] = []
        self.hung_up: list[tuple[str, bool]] = []

    async def dial(self, request: DialRequest, listener: HumanListener) -> str:
        self.requests.append(request)
        if self.fail:
            raise PhonebridgeError("refused")
        return "CAhuman"

    def hang_up(self, human_id: str, *, ringing: bool) -> None:
        self.hung_up.append((human_id, ringing))


def make(
    tmp_path: Path,
    mode: str = "warm",
    dialer: Dialer | None = None,
    *,
    can_hand_off: bool = True,
    can_warm: bool = True,
) -> tuple[TransferPolicy, Call]:
    persona = Persona.model_validate(
        {
            "id": "desk",
            "source": tmp_path / "desk.yaml",
            "name": "Desk",
            "provider": "personaplex",
            "voice": "NATF2",
            "prompt": "Hello.",
            "transfer": {
                "to": "+14165550199",
                "mode": mode,
                "keys": {"0": "transfer", "9": "opt_out", "#": "repeat"},
                "agent_phrases": {"patterns": ["transfer you"], "confirm_seconds": 1},
            },
        }
    )
    assert persona.transfer is not None
    policy = TransferPolicy(
        persona=persona,
        transfer=persona.transfer,
        call_id="CAcaller",
        caller="+15005550006",
        dialled="+14165550150",
        sample_rate=8000,
        metrics=BridgeMetrics(),
        dialer=dialer,
        can_hand_off=can_hand_off,
        can_warm=can_warm,
    )
    call = Call()
    policy.start(call)
    return policy, call


async def test_keys_outside_the_map_go_to_the_model(tmp_path: Path) -> None:
    policy, call = make(tmp_path)
    assert await policy.key("5", 1.0) is False
    assert call.ended == []
    assert call.notes == []


async def test_opt_out_and_repeat(tmp_path: Path) -> None:
    policy, call = make(tmp_path)
    assert await policy.key("#", 1.0) is True
    assert call.told == [REPEAT_HINT]
    assert await policy.key("9", 2.0) is True
    assert call.ended == [(CallEndReason.OPTED_OUT, "key 9", None)]
    assert [kind for kind, _ in call.notes] == ["transfer_trigger", "transfer_trigger"]


async def test_cold_transfer_ends_once_with_a_dial(tmp_path: Path) -> None:
    policy, call = make(tmp_path, mode="cold")
    assert await policy.key("0", 1.0) is True
    assert await policy.key("0", 1.1) is True  # consumed, not a second transfer
    policy.agent_text(" let me transfer you", 1.2)
    policy.poll(100.0)
    assert call.ended == [
        (CallEndReason.TRANSFERRED, "cold transfer (dtmf)", Handoff("+14165550199"))
    ]
    assert call.transfers == [TransferFacts("+14165550199", "cold", "dialled")]
    assert policy.next_deadline() is None  # the phrase trigger was disarmed


async def test_warm_without_call_control_is_cold(tmp_path: Path) -> None:
    policy, call = make(tmp_path, dialer=None)
    await policy.key("0", 1.0)
    assert call.ended[0][2] == Handoff("+14165550199")
    assert ("transfer_cold", "no call control configured: cold transfer") in call.notes


async def test_warm_on_a_cold_only_leg_is_cold_and_rings_nobody(tmp_path: Path) -> None:
    dialer = Dialer()
    policy, call = make(tmp_path, dialer=dialer, can_warm=False)
    assert await policy.key("0", 1.0) is True
    assert await policy.key("0", 1.1) is True
    assert call.ended == [
        (CallEndReason.TRANSFERRED, "cold transfer (dtmf)", Handoff("+14165550199"))
    ]
    assert call.transfers == [TransferFacts("+14165550199", "cold", "dialled")]
    assert ("transfer_cold", "this leg cannot hand over warm: cold transfer") in call.notes
    assert dialer.requests == []
    assert call.held == []


async def test_a_leg_that_cannot_hand_over_gives_the_key_to_the_model(tmp_path: Path) -> None:
    policy, call = make(tmp_path, mode="cold", can_hand_off=False)
    assert await policy.key("0", 1.0) is False
    assert call.ended == []
    assert call.transfers == []
    assert [kind for kind, _ in call.notes] == ["transfer_unavailable"]


async def test_a_refused_dial_returns_the_caller_to_the_persona(tmp_path: Path) -> None:
    dialer = Dialer(fail=True)
    policy, call = make(tmp_path, dialer=dialer)
    await policy.key("0", 1.0)
    assert len(call.held) == 1
    await policy.close(CallOutcome("CAcaller", "desk", CallEndReason.CALLER_HANGUP))
    # close() cancels the dial task: run it again to see the refusal path instead.
    policy, call = make(tmp_path, dialer=dialer)
    await policy.key("0", 1.0)
    for task in list(policy._tasks):
        await task
    assert call.transfers[-1] == TransferFacts("+14165550199", "warm", TransferResult.FAILED.value)
    assert call.resumed == 1
    assert call.ended == []


async def test_caller_leaving_while_ringing_cancels_the_human(tmp_path: Path) -> None:
    dialer = Dialer()
    policy, call = make(tmp_path, dialer=dialer)
    await policy.key("0", 1.0)
    for task in list(policy._tasks):
        await task
    await policy.close(CallOutcome("CAcaller", "desk", CallEndReason.CALLER_HANGUP))
    assert dialer.hung_up == [("CAhuman", True)]
    assert call.transfers[-1].result == "abandoned"
    late = policy.human_pressed("1")
    assert isinstance(late, Dismiss)
    assert late.message.startswith("Sorry, the caller has already hung up")
