"""Plivo Media Streams support (CARRIERS.md)."""
