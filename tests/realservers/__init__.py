"""Real servers from Debian packages, started by tests on loopback (PostgreSQL, ...)."""
