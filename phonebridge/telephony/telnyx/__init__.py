"""Telnyx Media Streams support (CARRIERS.md)."""
