"""Real servers from Debian packages (redis-server, ...) started by test fixtures on loopback."""
