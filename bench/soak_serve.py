"""``phonebridge serve`` with PolarGrid and fal pointed at local simulators (the soak's bridge).

Run: python bench/soak_serve.py --polargrid-url ws://127.0.0.1:P --fal-url ws://127.0.0.1:F

Settings come from the environment exactly as for ``phonebridge serve`` and
the process runs the very same code (``phonebridge.cli.main(["serve"])``:
uvicorn, the draining server, logging). The one difference: production has
no setting for the hosted providers' hosts (they are fixed, and a setting
would be one more way to send a key to the wrong place), so the soak swaps in
:class:`~phonebridge.service.ProviderOverrides` at the app factory, as the
in-process demo does.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from fastapi import FastAPI

from phonebridge import cli, serve, service
from phonebridge.config import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polargrid-url", required=True, help="ws:// base of a PolarGrid sim")
    parser.add_argument("--fal-url", required=True, help="ws:// base of a fal simulator")
    ours, serve_flags = parser.parse_known_args(argv)
    simulated = service.ProviderOverrides(
        polargrid_base_url=ours.polargrid_url, fal_base_url=ours.fal_url
    )
    real_build_app = service.build_app

    async def build_app(
        settings: Settings,
        *,
        clock: service.Clock = time.monotonic,
        overrides: service.ProviderOverrides = simulated,
        drain_seconds: float = 30.0,
    ) -> FastAPI:
        return await real_build_app(
            settings, clock=clock, overrides=simulated, drain_seconds=drain_seconds
        )

    # serve() looks build_app up in its module at call time: the one seam.
    setattr(serve, "build_app", build_app)  # noqa: B010 - a monkeypatch, on purpose
    return cli.main(["serve", *serve_flags])


if __name__ == "__main__":
    sys.exit(main())
