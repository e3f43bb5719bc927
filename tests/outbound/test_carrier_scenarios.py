"""The outbound scenarios every dial-out carrier beside Twilio goes through the same way,
written once and run on each (the test id names the carrier): calls nobody answers end
in their outcome and call row, a persona that opens its model at dial time holds a
lease while it rings, and ``PHONEBRIDGE_OUTBOUND_CARRIER`` picks the carrier for a
persona bound to none. What only one carrier does is in test_<carrier>_calls.py.
"""

from __future__ import annotations

import pytest

from phonebridge.simulators.twilio_api import Callee

from .carriers import CARRIERS, AnyFactory, eventually

EVERY_CARRIER = pytest.mark.parametrize("carrier", list(CARRIERS))


@EVERY_CARRIER
@pytest.mark.parametrize(
    ("kind", "outcome", "end_reason"),
    [
        ("no-answer", "no_answer", "no_answer"),
        ("busy", "busy", "line_busy"),
        ("failed", "failed", "dial_failed"),
    ],
)
async def test_unanswered_calls_end_in_their_outcome_row(
    carrier: str, carrier_outbounds: AnyFactory, kind: str, outcome: str, end_reason: str
) -> None:
    facts = CARRIERS[carrier]
    async with carrier_outbounds({facts.human: Callee(kind)}) as o:  # type: ignore[arg-type]
        response = await o.call(to=facts.human, persona=facts.persona)
        assert response.status_code == 201, response.text
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == outcome
        (call,) = o.api.created
        assert ended.call_sid == facts.call_id(call)  # the carrier's id, for its REST API
        assert call.report is None  # never streamed
        row = await o.row(facts.call_id(call))
        assert row.end_reason == end_reason
        assert row.channel == carrier
        assert o.active_calls == 0
        assert o.twilio.requests == []


@EVERY_CARRIER
async def test_dial_time_lease_is_held_while_it_rings_and_released(
    carrier: str, carrier_outbounds: AnyFactory
) -> None:
    facts = CARRIERS[carrier]
    async with carrier_outbounds({facts.human: Callee("no-answer", ring=0.5)}) as o:
        response = await o.call(to=facts.human, persona=facts.dial_persona)
        assert response.status_code == 201, response.text
        assert o.active_calls == 1  # the model session opened at dial time holds a lease
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "no_answer"
        await eventually(lambda: o.active_calls == 0)
        assert ended.call_sid is not None
        assert (await o.row(ended.call_sid)).end_reason == "no_answer"


@EVERY_CARRIER
async def test_the_outbound_carrier_setting_picks_the_carrier_for_unbound_personas(
    carrier: str, carrier_outbounds: AnyFactory
) -> None:
    facts = CARRIERS[carrier]
    async with carrier_outbounds({facts.human: Callee("busy")}, outbound_carrier=carrier) as o:
        response = await o.call(to=facts.human, persona="citysan")  # no carrier: binding
        assert response.status_code == 201, response.text
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "busy"
        assert [c.to for c in o.api.created] == [facts.written(facts.human)]
        assert o.twilio.requests == []
