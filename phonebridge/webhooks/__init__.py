"""Outgoing webhooks: signing, post-call delivery and its outbox (docs/webhooks.md)."""
