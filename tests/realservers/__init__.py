"""Real servers from Debian packages (Caddy, Redis, PostgreSQL) started on loopback by tests."""
