"""Real servers from Debian packages (redis-server, PostgreSQL, Caddy), started on loopback."""
