"""Core HTTP behaviour: health routes and the one error shape."""

from __future__ import annotations

from support import AppServer, serve_app


async def test_ping_and_ping_db(server: AppServer) -> None:
    assert (await server.client.get("/ping")).status == 200
    resp = await server.client.get("/ping_db")
    assert resp.status == 200
    assert resp.body == b""


async def test_unknown_route_and_wrong_method_are_json(env: dict[str, str]) -> None:
    async with serve_app(env, plugins=()) as srv:
        resp = await srv.client.get("/no/such/path")
        assert resp.status == 404
        assert resp.json == {"message": "not-found"}
        assert resp.headers["Content-Type"].startswith("application/json")
        resp = await srv.client.request("DELETE", "/ping")
        assert resp.status == 405
        assert resp.json == {"message": "method-not-allowed"}
