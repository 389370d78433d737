"""Core HTTP behaviour: health routes, the one error shape, the served spec and docs."""

from __future__ import annotations

from typing import Any

import pytest

from example_helpers import example_plugin
from support import AppServer, serve_app


@pytest.fixture
async def bare(env: dict[str, str]) -> Any:
    """The core plus the example plugin only (no auth, so the error shapes show directly)."""
    async with serve_app(env, plugins=(), extra=example_plugin()) as srv:
        yield srv


async def test_ping_and_ping_db(server: AppServer) -> None:
    resp = await server.client.get("/ping")
    assert resp.status == 200 and resp.body == b""
    resp = await server.client.get("/ping_db")
    assert resp.status == 200 and resp.body == b""


async def test_unknown_route_and_wrong_method_are_json(bare: AppServer) -> None:
    resp = await bare.client.get("/no/such/path")
    assert resp.status == 404
    assert resp.json == {"message": "not-found"}
    assert resp.headers["Content-Type"].startswith("application/json")
    resp = await bare.client.request("DELETE", "/ping")
    assert resp.status == 405
    assert resp.json == {"message": "method-not-allowed"}
    resp = await bare.client.request("PATCH", "/v1/example/echo", body={"text": "x"})
    assert resp.status == 405 and resp.json == {"message": "method-not-allowed"}


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'"text"', b"{\"text\": 5}", b"{\"text\": \"\"}",
                                 b"{\"text\": \"ok\", \"extra\": 1}", b"\xff\xfe"])
async def test_bad_bodies_are_400_bad_parameters(bare: AppServer, raw: bytes) -> None:
    resp = await bare.client.request("POST", "/v1/example/echo", raw=raw)
    assert resp.status == 400
    assert resp.json == {"message": "bad-parameters"}
    assert resp.headers["Content-Type"].startswith("application/json")


async def test_unexpected_exception_is_500_without_details(bare: AppServer, caplog: pytest.LogCaptureFixture) -> None:
    resp = await bare.client.get("/v1/example/echo")
    assert resp.status == 500
    assert resp.json == {"message": "internal-error"}
    assert b"secret-detail" not in resp.body and b"Traceback" not in resp.body
    assert "secret-detail-that-must-not-leak" in caplog.text  # logged, with its traceback
    assert "Traceback" in caplog.text


async def test_spec_and_docs_are_served(server: AppServer) -> None:
    resp = await server.client.get("/openapi.json")
    assert resp.status == 200
    spec = resp.json
    assert spec["openapi"].startswith("3.")
    assert "/ping_db" in spec["paths"]
    assert "Error" in spec["components"]["schemas"]
    resp = await server.client.get("/docs")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    assert b'src="/docs/init.js"' in resp.body  # the page's own script, no inline one (strict CSP)
    init = await server.client.get("/docs/init.js")
    assert init.status == 200 and b"/openapi.json" in init.body


async def test_ok_body_round_trips_unicode(bare: AppServer) -> None:
    resp = await bare.client.post("/v1/example/echo", {"text": "Привет — мир"})
    assert resp.status == 200
    assert resp.json == {"text": "Привет — мир"}
    assert "Привет".encode() in resp.body  # UTF-8 on the wire, not \\u escapes
