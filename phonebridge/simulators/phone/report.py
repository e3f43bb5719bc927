"""What a simulated call did, as a JSON-able record (``phonebridge dial`` prints it)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True, slots=True)
class ProtocolErrorRecord:
    code: int  # the carrier's error code (Twilio 31951, 11200 ...; 0 where it has none)
    message: str
    at_s: float  # seconds since the webhook was sent


@dataclass(slots=True)
class DialReport:
    """Filled in while the call runs; times are seconds since the webhook was sent
    unless named ``*_after_start_s`` (since the ``start`` message)."""

    call_sid: str
    account_sid: str
    stream_sid: str
    to: str
    from_: str
    webhook_status: int | None = None
    twiml_answers: list[str] = field(default_factory=list)
    twiml_verbs: list[str] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    dialled: list[str] = field(default_factory=list)
    stream_url: str | None = None
    connected_url: str | None = None
    custom_parameters: dict[str, str] = field(default_factory=dict)
    upgrade_status: int | None = None
    frames_sent: int = 0
    bytes_sent: int = 0
    dtmf_sent: list[str] = field(default_factory=list)
    frames_received: int = 0  # media messages from the bridge (one per 80 ms model page)
    bytes_received: int = 0
    marks_received: list[str] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    clears_received: int = 0
    first_agent_audio_after_start_s: float | None = None
    protocol_errors: list[ProtocolErrorRecord] = field(default_factory=list)
    ended_by: str = ""  # caller | caller_dropped | bridge | protocol_error | twiml | ...
    ended_at_s: float | None = None
    stream_duration_s: float | None = None
    close_code: int | None = None
    close_reason: str = ""
    action_url: str | None = None
    action_status: int | None = None
    action_answer: str | None = None
    heard_seconds: float = 0.0  # the playback timeline written to ``out`` (silence included)
    agent_audio_seconds: float = 0.0  # audio the bridge sent (bytes_received at 8 kHz)
    heard_path: str | None = None
    # The carrier flavours (:mod:`.carriers`); Twilio calls keep the defaults.
    carrier: str = "twilio"
    sample_rate: int = 8000  # the leg's rate (what ``out`` is written at)
    answer_document: str | None = None  # Plivo XML, NCCO, cXML, applet JSON (Twilio: twiml_answers)
    rest_requests: list[dict[str, object]] = field(default_factory=list)  # the bridge's REST calls
    callbacks: list[dict[str, object]] = field(default_factory=list)  # webhooks after set-up
    notes: list[str] = field(default_factory=list)  # tolerated app faults (Exotel's gaps …)

    @property
    def ok(self) -> bool:
        """The bridge answered and nothing it sent was rejected."""
        return self.webhook_status == 200 and not self.protocol_errors

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["ok"] = self.ok
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
