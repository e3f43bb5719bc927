"""HTTP and WebSocket edges of the further carriers (one module each, :mod:`.common` shared)."""
