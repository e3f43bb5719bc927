"""The dashboard auth dependency on its own: remote clients, header shapes, loopback rules."""

from __future__ import annotations

import base64

import httpx
import pytest
from fastapi import Depends, FastAPI

from phonebridge.web.auth import dashboard_auth, is_loopback


def app_with(token: str | None) -> FastAPI:
    app = FastAPI()

    @app.get("/secret", dependencies=[Depends(dashboard_auth(token))])
    async def secret() -> str:
        return "ok"

    return app


def from_client(app: FastAPI, host: str) -> httpx.AsyncClient:
    # in-process ASGI: the client address is whatever we say, no socket involved
    transport = httpx.ASGITransport(app=app, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://phonebridge.test")


@pytest.mark.parametrize("host", ["203.0.113.7", "10.0.0.2", "2001:db8::1", "unknown", ""])
async def test_without_a_token_remote_clients_are_refused(host: str) -> None:
    async with from_client(app_with(None), host) as http:
        response = await http.get("/secret")
    assert response.status_code == 403
    assert "PHONEBRIDGE_DASHBOARD_TOKEN" in response.text


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.1", "::1", "::ffff:127.0.0.1"])
async def test_without_a_token_loopback_clients_pass(host: str) -> None:
    async with from_client(app_with(None), host) as http:
        assert (await http.get("/secret")).status_code == 200


async def test_with_a_token_remote_clients_need_it() -> None:
    pair = base64.b64encode(b"ops:s3cret:with:colons").decode()
    async with from_client(app_with("s3cret:with:colons"), "203.0.113.7") as http:
        assert (await http.get("/secret")).status_code == 401
        ok = await http.get("/secret", headers={"Authorization": f"Basic {pair}"})
        assert ok.status_code == 200
        bearer = await http.get("/secret", headers={"authorization": "bearer s3cret:with:colons"})
        assert bearer.status_code == 200
        for header in ("Bearer", "Bearer ", "Basic ", "Basic !!!", "Digest x", "s3cret"):
            refused = await http.get("/secret", headers={"Authorization": header})
            assert refused.status_code == 401, header


async def test_with_a_token_loopback_is_not_enough() -> None:
    async with from_client(app_with("tok"), "127.0.0.1") as http:
        assert (await http.get("/secret")).status_code == 401


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert not is_loopback("localhost")  # a name is not an address: refuse rather than resolve
    assert not is_loopback(None)
    assert not is_loopback("::ffff:192.0.2.1")
