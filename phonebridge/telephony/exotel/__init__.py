"""Exotel Media Streams support (CARRIERS.md)."""
