"""Answer the voice webhook when the model is ready (issue 15, "Answer when the model is ready").

A carrier keeps the caller hearing ringback until the webhook is answered.
Holding the ``<Connect><Stream>`` answer until the model's handshake arrives
moves the model's conditioning (seconds on a real GPU) from silence after
"hello" into ringing, where a caller expects to wait. The bound keeps the
webhook well inside Twilio's 15 s timeout: past it the call is answered anyway
and the caller waits for the model in silence, as without the hold.

The model socket is open while it rings either way (the session starts opening
when the webhook arrives); the hold only moves the answer. A caller who hangs
up while it rings ends the pending call through the call-status callback
(:meth:`phonebridge.telephony.twilio.entry.TwilioEntry.call_status`, then
:meth:`phonebridge.calls.bridge.Bridge.withdraw_pending`), which closes the socket
at once and ends this wait.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def answer_when_ready(opening: asyncio.Task[Any], within: float) -> bool:
    """Wait until ``opening`` finishes (ready, failed or cancelled) or ``within`` passes.

    True when the model finished opening in time. Never cancels ``opening``:
    the call owns it, the webhook only watches it.
    """
    if within <= 0 or opening.done():
        return opening.done()
    done, _ = await asyncio.wait({opening}, timeout=within)
    return bool(done)
