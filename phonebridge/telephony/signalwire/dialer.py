"""Placing calls with SignalWire's Compatibility (LaML) REST API.

It is Twilio's 2010-04-01 Calls resource under ``{space}/api/laml`` with Basic
``project:token``, including ``MachineDetection`` and ``AsyncAmd`` (SignalWire
documents both), which is exactly how SignalWire's own compatibility SDK wraps
the ``twilio`` package. Its callbacks are Twilio's forms signed with the
project's Signing Key. Its call ids are UUIDs, so our SID for the call is
:func:`~phonebridge.telephony.carrier_leg.bridge_call_sid` of it, as for a
call SignalWire delivers to us.
"""

from __future__ import annotations

from phonebridge.telephony.twilio.dialer import TwilioDialer


class SignalWireDialer(TwilioDialer):
    """Places calls with SignalWire's Compatibility API (Twilio's Calls resource, LaML)."""

    name = "signalwire"
    label = "SignalWire"

    def __init__(self, project_id: str, api_token: str, *, space_url: str) -> None:
        super().__init__(project_id, api_token, api_base_url=space_url.rstrip("/") + "/api/laml")
