"""Outbound calls and campaigns: the persona calls people, safely (docs/outbound.md).

- :mod:`.numbers`: E.164 validation, country allow-list, callee time zones and
  calling windows (pure, time passed in);
- :mod:`.store`: attempts, campaigns, contacts and the do-not-call list in the
  SQL call index, with atomic claims;
- :mod:`.carrier`: the carrier REST interface (:class:`.carrier.Dialer`) and
  its Twilio implementation;
- :mod:`.service`: placing one call, the answer / status / AMD callbacks,
  the opt-out digit, crash recovery;
- :mod:`.campaigns`: contact uploads and the campaign scheduler;
- :mod:`.cli`: ``phonebridge call`` and ``phonebridge campaign``.
"""
