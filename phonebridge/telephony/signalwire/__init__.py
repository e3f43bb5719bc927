"""Signalwire Media Streams support (CARRIERS.md)."""
