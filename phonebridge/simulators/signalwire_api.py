"""TEST DOUBLE: SignalWire's Compatibility (LaML) Calls API on loopback, with callees.

SignalWire's Compatibility API is Twilio's 2010-04-01 Calls resource under
``{space}/api/laml`` (HTTP Basic ``project:token``), so this double is the
Twilio one (:class:`~phonebridge.simulators.twilio_api.FakeTwilioApi`: the
call's life, status and async AMD callbacks, ``Status=completed`` hang-ups,
the ``To``/``From``/``StartTime>`` list) with SignalWire's differences:

- routes under ``/api/laml/2010-04-01/Accounts/{project}``;
- call ids are UUIDs (not ``CA`` + hex);
- callbacks are signed with the project's **Signing Key** (Twilio's
  algorithm) under ``X-SignalWire-Signature``;
- an answered call is run by the SignalWire phone simulator
  (:class:`~phonebridge.simulators.phone.carriers.signalwire.SignalWireFlavour`):
  the answer URL must return cXML ``<Connect><Stream>`` with a ``wss://`` URL
  without a query string, a SignalWire codec and ``authBearerToken``.
"""

from __future__ import annotations

import uuid

from phonebridge.simulators.fake_api import Callee, callee_phone
from phonebridge.simulators.phone.carriers.signalwire import SignalWireFlavour
from phonebridge.simulators.phone.report import DialReport
from phonebridge.simulators.twilio_api import FakeCall, FakeTwilioApi
from phonebridge.telephony.signalwire.signature import SIGNATURE_HEADER, sign_form


class FakeSignalWireApi(FakeTwilioApi):
    """``async with FakeSignalWireApi(...) as api:`` ``api.url`` is the space URL."""

    PREFIX = "/api/laml/2010-04-01/Accounts/{account}"

    def __init__(
        self,
        *,
        project_id: str,
        api_token: str,
        signing_key: str,
        bridge_public_url: str,
        bridge_local_url: str,
        callees: dict[str, Callee] | None = None,
    ) -> None:
        super().__init__(
            account_sid=project_id,
            auth_token=api_token,
            bridge_public_url=bridge_public_url,
            bridge_local_url=bridge_local_url,
            callees=callees,
        )
        self.signing_key = signing_key

    def _new_sid(self) -> str:
        return str(uuid.uuid4())

    def _signed(self, url: str, params: dict[str, str]) -> dict[str, str]:
        return {SIGNATURE_HEADER: sign_form(self.signing_key, url, params)}

    async def _connect(self, call: FakeCall) -> DialReport:
        # The callee's leg is 16 kHz: the stream's rate is what the cXML codec asks for.
        flavour = SignalWireFlavour(
            self.signing_key,
            self.account,
            None,
            call_sid=call.sid,
            answer_url=call.url,
            direction="outbound-api",
        )
        report = DialReport(
            call_sid=call.sid,
            account_sid=self.account,
            stream_sid="",
            to=call.to,
            from_=call.from_,
            carrier="signalwire",
        )
        return await callee_phone(flavour, call.callee, self.routes, report).run()
