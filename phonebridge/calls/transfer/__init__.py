"""Handing a caller to a human (issue 17; docs/transfer.md).

- :mod:`.triggers` — sans-I/O: the keypad map and the phrase matchers that
  decide *when* (each fires once, never twice);
- :mod:`.summary` — the whisper a warm transfer's human hears;
- :mod:`.warm` — sans-I/O: the warm hand-off's states (ringing, whisper,
  accepted, declined, unanswered), time passed in;
- :mod:`.hold` — the audio the caller hears while the human is rung;
- :mod:`.policy` — the per-call :class:`~phonebridge.calls.policy.CallPolicy`
  that joins them to a call.

Nothing here names a carrier: the carrier side of a warm transfer (Twilio:
``telephony/twilio/transfer.py``) is reached through :class:`.warm.HumanDialer`.
"""
