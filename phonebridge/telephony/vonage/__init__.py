"""Vonage Media Streams support (CARRIERS.md)."""
