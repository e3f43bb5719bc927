"""Dashboard and API security (issue 8, "Dashboard and API"): auth on every route,
no schema or docs for strangers, no path out of the data directory, no listings.

The route test enumerates the application's routes instead of listing URLs, so a
route added later is covered without anyone remembering to add it here: it must
either answer 401 without credentials or be added, on purpose, to PUBLIC.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from phonebridge.local import LocalBridge
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import CallUpdate

from .conftest import BridgeFactory, call, record_of

TOKEN = "dash-2b9c6f0e8a7d4c1b9e3f"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
PUBLIC = {
    # Twilio cannot send the dashboard token: its routes check Twilio's signatures.
    ("POST", "/twilio/voice"),
    ("POST", "/twilio/stream-ended"),
    ("POST", "/twilio/call-status"),
    # Any replica answers the <Connect action> of a replica that is gone.
    ("POST", "/twilio/r/{replica}/stream-ended"),
    ("POST", "/twilio/r/{replica}/call-status"),
    ("WS", "/twilio/media"),
    # Outbound calls' answer, status and machine-detection callbacks (signed by
    # Twilio; any replica settles them from the shared rows).
    *{
        (method, prefix + "/outbound/" + kind)
        for method in ("POST",)
        for prefix in ("/twilio", "/twilio/r/{replica}")
        for kind in ("answer", "status", "amd")
    },
    # A warm transfer's human call (whisper, key, status): Twilio-signed, and
    # answered by any replica (one that does not hold the transfer lets the human go).
    ("POST", "/twilio/transfer/{transfer_id}/{step}"),
    ("POST", "/twilio/r/{replica}/transfer/{transfer_id}/{step}"),
    # Probes and the Prometheus scrape (kept off the public edge by deploy/).
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
}
SAMPLE_PARAMS = {"call_sid": "CA" + "0" * 32, "name": "dashboard.css"}


def endpoints(routes: list[BaseRoute]) -> set[tuple[str, str]]:
    """(method, path template) for every route, mounts included."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, WebSocketRoute):
            found.add(("WS", route.path))
        elif isinstance(route, APIRoute | Route):
            found |= {(method, route.path) for method in route.methods or ()}
        elif hasattr(route, "original_router"):
            # FastAPI keeps include_router() entries as a lazy branch: walk into it.
            prefix = route.include_context.prefix
            found |= {(m, prefix + p) for m, p in endpoints(list(route.original_router.routes))}
        elif isinstance(route, Mount):
            found |= {(m, route.path + p) for m, p in endpoints(list(route.routes))}
            found.add(("GET", route.path + "/"))
        else:
            raise AssertionError(f"a route of a kind this test does not know: {route!r}")
    return found


def concrete(path: str, params: dict[str, str] | None = None) -> str:
    values = {**SAMPLE_PARAMS, **(params or {})}
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), "x"), path)


@pytest.fixture
async def bridge(start_bridge: BridgeFactory) -> AsyncIterator[LocalBridge]:
    async with start_bridge(dashboard_token=TOKEN) as running:
        yield running


async def test_every_route_but_twilio_and_probes_needs_the_token(bridge: LocalBridge) -> None:
    record = await record_of(bridge, (await call(bridge)).call_sid)
    routes = endpoints(list(bridge.app.routes))
    assert {path for _, path in routes} >= {"/api/calls", "/", "/openapi.json"}
    assert routes & PUBLIC == PUBLIC
    # The dashboard's sockets (Talk, listen-in) cannot carry the token (browsers
    # put no Authorization on an upgrade): they take a one-time ticket that only
    # an authenticated POST issues, and refuse the upgrade without one, even
    # with the token itself.
    sockets = sorted(path for method, path in routes - PUBLIC if method == "WS")
    assert sockets == ["/listen/socket", "/talk/socket"]
    for path in sockets:
        for headers in ({}, BEARER):
            for query in ("", "?ticket=guess"):
                url = "ws://" + bridge.url.removeprefix("http://") + path + query
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(url, additional_headers=headers):
                        pass
                assert refused.value.response.status_code == 403
    guarded = sorted(route for route in routes - PUBLIC if route[0] != "WS")
    wrong = (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Cookie": f"token={TOKEN}"},
    )
    async with httpx.AsyncClient(base_url=bridge.url, timeout=10) as http:
        for method, template in guarded:
            assert method not in ("WS",), f"a WebSocket route outside /twilio: {template}"
            url = concrete(template, {"call_sid": record.call_sid})
            for headers in wrong:
                response = await http.request(method, url, headers=headers)
                assert response.status_code == 401, (method, url, headers, response.status_code)
                assert record.call_sid not in response.text
            # With the token the same request gets through (so the 401 was the auth).
            allowed = await http.request(method, url, headers=BEARER)
            assert allowed.status_code != 401, (method, url)


async def test_the_schema_needs_the_token_and_docs_pages_do_not_exist(bridge: LocalBridge) -> None:
    async with httpx.AsyncClient(base_url=bridge.url, timeout=10) as http:
        assert (await http.get("/openapi.json")).status_code == 401
        schema = await http.get("/openapi.json", headers=BEARER)
        assert schema.status_code == 200
        assert "/api/calls" in schema.json()["paths"]
        for url in ("/docs", "/redoc", "/docs/oauth2-redirect", "/openapi.yaml"):
            for headers in ({}, BEARER):
                assert (await http.get(url, headers=headers)).status_code in (401, 404), url


async def test_encoded_and_absolute_paths_cannot_escape(
    bridge: LocalBridge, tmp_path: Path
) -> None:
    record = await record_of(bridge, (await call(bridge)).call_sid)
    sid = record.call_sid
    (tmp_path / "outside.txt").write_text("NOT-YOURS")
    async with httpx.AsyncClient(base_url=bridge.url, headers=BEARER, timeout=10) as http:
        for url in (
            "/api/calls/%2e%2e%2f%2e%2e%2fphonebridge.db/recording.wav",
            "/api/calls/%2e%2e/recording.wav",
            "/api/calls/%252e%252e%252fphonebridge.db/recording.wav",  # double-encoded
            "/api/calls/..%5c..%5cphonebridge.db/recording.wav",  # backslashes
            f"/api/calls/{sid}/..%2f..%2f..%2fphonebridge.db",
            f"/api/calls/{sid}/%2e%2e/%2e%2e/phonebridge.db",
            f"/api/calls/{sid}%2f..%2f..%2foutside.txt/recording.wav",
            "/api/calls/%2Ftmp%2Foutside.txt/recording.wav",  # absolute
            f"/api/calls/{tmp_path}/outside.txt/recording.wav",
            "/api/calls/\uff0e\uff0e/recording.wav",  # fullwidth dots
            "/static/%2e%2e/app.py",
            "/static/%2e%2e%2fapp.py",
            "/static/..%2f..%2f..%2fpyproject.toml",
            "/static//etc/passwd",
            "/static/%2Fetc%2Fpasswd",
            f"/static/{tmp_path}/outside.txt",
            "//etc/passwd",
            "/calls/%2e%2e%2f%2e%2e%2fphonebridge.db",
        ):
            response = await http.get(url)
            assert response.status_code in (400, 404, 405), (url, response.status_code)
            for leaked in (b"RIFF", b"SQLite", b"NOT-YOURS", b"root:", b"[project]", b"import "):
                assert leaked not in response.content, (url, leaked)


async def set_recording(bridge: LocalBridge, call_sid: str, path: str) -> None:
    index = await CallIndex.create(bridge.settings.effective_database_url)
    try:
        await index.update(call_sid, CallUpdate(recording_path=path))
    finally:
        await index.close()


def swap_for_link(path: Path, keep_as: Path | None, target: Path) -> None:
    """Replace ``path`` by a symlink to ``target`` (moving the file to ``keep_as``)."""
    if keep_as is not None:
        path.rename(keep_as)
    else:
        path.unlink()
    path.symlink_to(target)


async def test_symlinks_out_of_the_data_directory_are_refused(
    bridge: LocalBridge, tmp_path: Path
) -> None:
    record = await record_of(bridge, (await call(bridge)).call_sid)
    assert record.recording_path is not None
    data = bridge.settings.data_dir.resolve()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.wav").write_bytes(b"RIFF-NOT-YOURS")
    # a file link, a directory link, and the real recording swapped for a link
    (data / "recordings" / "link.wav").symlink_to(outside / "secret.wav")
    (data / "recordings" / "2099").symlink_to(outside, target_is_directory=True)
    real = Path(record.recording_path)
    kept = real.with_suffix(".kept")
    swap_for_link(real, kept, outside / "secret.wav")
    url = f"/api/calls/{record.call_sid}/recording.wav"
    async with httpx.AsyncClient(base_url=bridge.url, headers=BEARER, timeout=10) as http:
        for stored in (
            str(real),
            str(data / "recordings" / "link.wav"),
            "recordings/link.wav",
            str(data / "recordings" / "2099" / "secret.wav"),
            "recordings/2099/secret.wav",
            "recordings/2099/../2099/secret.wav",
        ):
            await set_recording(bridge, record.call_sid, stored)
            for suffix in ("recording.wav", "waveform.json"):
                response = await http.get(url.replace("recording.wav", suffix))
                assert response.status_code == 404, (stored, suffix)
                assert b"NOT-YOURS" not in response.content
        # A link that stays inside the data directory is just a file: the check
        # follows links, it does not refuse them all.
        swap_for_link(real, None, kept)
        await set_recording(bridge, record.call_sid, str(real))
        served = await http.get(url)
        assert served.status_code == 200
        assert served.content == kept.read_bytes()


async def test_no_directory_listing_anywhere(bridge: LocalBridge) -> None:
    record = await record_of(bridge, (await call(bridge)).call_sid)
    async with httpx.AsyncClient(base_url=bridge.url, headers=BEARER, timeout=10) as http:
        for url in (
            "/static/",
            "/static",
            f"/api/calls/{record.call_sid}/",
            "/recordings/",
            "/transcripts/",
            "/data/",
            "/personas/",
            "/twilio/",
            "/api/",
        ):
            response = await http.get(url)
            assert response.status_code in (307, 404, 405), (url, response.status_code)
            assert b"Index of" not in response.content
            assert b".wav" not in response.content
            assert b".yaml" not in response.content
