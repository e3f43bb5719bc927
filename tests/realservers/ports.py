"""Loopback ports for servers that bind later, in another process or after a restart.

``bind(("127.0.0.1", 0))`` then ``close()`` finds a port that is free *now*;
the server we start binds it a moment later. In between, the port is fair
game: the kernel hands out the same ephemeral range to every ``bind(0)`` and
to every outgoing connection on the machine. Under pytest-xdist another
worker is doing the same thing at the same time, and a Redis or PostgreSQL
restarted "on the same port" leaves it unbound for seconds.

So :func:`free_port` picks from a band below the ephemeral range (which the
kernel never hands out by itself), a different slice for each xdist worker
(``PYTEST_XDIST_WORKER``, ``gw<N>``), starting at a random place in the slice
(another engineer's test run on the same machine) and moving on with each
call, so one process does not give the same port out twice in a row. A port
something already listens on is skipped.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
from collections.abc import Iterator

BAND = range(20000, 32768)  # below Linux's default ip_local_port_range (32768-60999)
SLICES = 8  # worker gw<N> uses slice N % 8


def _slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) % SLICES if worker.isdigit() else 0
    size = len(BAND) // SLICES
    return range(BAND.start + index * size, BAND.start + (index + 1) * size)


def _candidates() -> Iterator[int]:
    ports = _slice()
    start = random.randrange(len(ports))  # spreads concurrent runs apart
    return itertools.cycle([*ports[start:], *ports[:start]])


_next = _candidates()


def free_port() -> int:
    """A loopback port nothing listens on, from this worker's own slice."""
    for _ in range(len(BAND)):
        port = next(_next)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port in this worker's slice")
