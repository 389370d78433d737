"""Hardening of the core's HTTP layer: bad input, oversized bodies, response headers, health probes."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from example_helpers import example_plugin
from messenger_core.web import MAX_BODY_BYTES, MAX_JSON_DEPTH, load_json
from support import AppServer, TcpProxy, serve_app


@pytest.fixture
async def bare(env: dict[str, str]) -> Any:
    """The core plus the example plugin only (no auth, so the error shapes show directly)."""
    async with serve_app(env, plugins=(), extra=example_plugin()) as srv:
        yield srv


def nested(depth: int) -> bytes:
    """A JSON object ``depth`` levels deep: {"a": {"a": ... {} ...}}."""
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def test_depth_bound_counts_levels() -> None:
    assert load_json(nested(MAX_JSON_DEPTH)) is not None
    assert load_json(b'[' * MAX_JSON_DEPTH + b']' * MAX_JSON_DEPTH) is not None
    for raw in (nested(MAX_JSON_DEPTH + 1), b'[' * (MAX_JSON_DEPTH + 1) + b']' * (MAX_JSON_DEPTH + 1),
                b'{"a": [' + b'[' * MAX_JSON_DEPTH + b']' * MAX_JSON_DEPTH + b']}'):
        with pytest.raises(ValueError):
            load_json(raw)
    # brackets inside strings are text, not depth
    assert load_json(b'{"text": "' + b"[" * 1000 + b'"}') == {"text": "[" * 1000}


@pytest.mark.parametrize("raw", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 5000 + b"1" + b"}" * 5000,
                                 b"[" * 100_000])
async def test_deeply_nested_json_is_400_and_logs_nothing(bare: AppServer, raw: bytes,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    resp = await bare.client.request("POST", "/v1/example/echo", raw=raw)
    assert resp.status == 400, resp
    assert resp.json == {"message": "bad-parameters"}
    assert resp.headers["Content-Type"].startswith("application/json")
    assert not [r for r in caplog.records if r.levelno > logging.WARNING], caplog.text
    resp = await bare.client.post("/v1/example/echo", {"text": "still fine"})
    assert (resp.status, resp.json) == (200, {"text": "still fine"})


async def test_deep_json_on_register_is_400(server: AppServer, caplog: pytest.LogCaptureFixture) -> None:
    raw = b'{"user_name": "deep", "password": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    resp = await server.client.request("POST", "/v1/auth/register", raw=raw)
    assert (resp.status, resp.json) == (400, {"message": "bad-parameters"})
    assert not [r for r in caplog.records if r.levelno > logging.WARNING], caplog.text


async def raw_exchange(url: str, head: bytes, body_chunks: list[bytes]) -> bytes:
    """Send a request as raw bytes (headers, then the body chunks, as a client streaming its upload
    would) and read everything the server answers until it closes the connection."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head)
    try:
        for chunk in body_chunks:
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass  # the server may stop reading once it has answered
    answer = b""
    try:
        answer = await asyncio.wait_for(reader.read(1 << 20), 10)
        while True:
            more = await asyncio.wait_for(reader.read(1 << 20), 10)
            if not more:
                break
            answer += more
    except ConnectionError:
        pass
    writer.close()
    return answer


def parse_answer(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one raw HTTP/1.1 response."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def assert_too_large(status: int, headers: dict[str, str], body: bytes) -> None:
    """413 with the one JSON error body."""
    assert status == 413, (status, headers, body)
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body[:int(headers["content-length"])]) == {"message": "payload-too-large"}


async def test_body_over_one_mib_is_413_json(bare: AppServer) -> None:
    resp = await bare.client.request("POST", "/v1/example/echo", raw=b"x" * (MAX_BODY_BYTES + 1))
    assert (resp.status, resp.json) == (413, {"message": "payload-too-large"}), resp
    assert resp.headers["Content-Type"].startswith("application/json")
    # exactly the limit is read (and then judged by the schema)
    resp = await bare.client.request("POST", "/v1/example/echo", raw=b" " * MAX_BODY_BYTES)
    assert (resp.status, resp.json) == (400, {"message": "bad-parameters"})
    resp = await bare.client.post("/v1/example/echo", {"text": "after"})
    assert (resp.status, resp.json) == (200, {"text": "after"})


async def test_announced_and_streamed_oversized_bodies_get_413_json(bare: AppServer,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    size = 8 * MAX_BODY_BYTES
    head = (f"POST /v1/example/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    answer = await raw_exchange(bare.url, head, [b" " * 65536] * (size // 65536))
    assert_too_large(*parse_answer(answer))
    # the client waits for "100 Continue" and gets the refusal before sending anything
    head = head.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n")
    assert_too_large(*parse_answer(await raw_exchange(bare.url, head, [])))
    # a chunked upload has no length to announce: it is refused once it passes the limit
    head = (b"POST /v1/example/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b" " * 65536 + b"\r\n"
    answer = await raw_exchange(bare.url, head, [chunk] * (size // 65536) + [b"0\r\n\r\n"])
    assert_too_large(*parse_answer(answer))
    resp = await bare.client.post("/v1/example/echo", {"text": "after"})
    assert (resp.status, resp.json) == (200, {"text": "after"})
    assert not [r for r in caplog.records if r.levelno > logging.WARNING], caplog.text


@pytest.mark.parametrize("method, path, body", [("GET", "/ping", None), ("GET", "/no/such/path", None),
                                                ("POST", "/v1/example/echo", {"text": "hi"}),
                                                ("POST", "/v1/example/echo", {"text": ""}),
                                                ("DELETE", "/ping", None), ("GET", "/v1/example/echo", None),
                                                ("GET", "/openapi.json", None), ("GET", "/docs", None)])
async def test_every_response_hides_the_server_and_forbids_sniffing(bare: AppServer, method: str, path: str,
                                                                    body: Any) -> None:
    resp = await bare.client.request(method, path, body=body)
    assert "Server" not in resp.headers, resp.headers.get("Server")
    assert resp.headers["X-Content-Type-Options"] == "nosniff", (resp.status, dict(resp.headers))


async def test_413_answers_hide_the_server_and_forbid_sniffing(bare: AppServer) -> None:
    resp = await bare.client.request("POST", "/v1/example/echo", raw=b"x" * (MAX_BODY_BYTES + 1))
    assert resp.status == 413
    assert "Server" not in resp.headers
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


CHATS_OPEN = ("messenger_chats",)


async def test_no_request_fails_on_connections_from_before_a_postgres_restart(env: dict[str, str]) -> None:
    proxy = TcpProxy(5432)
    settings = {**env, "POSTGRES_HOSTS": f"127.0.0.1:{proxy.port}", "POOL_SIZE": "4", "AUTH_DISABLED": "1"}
    try:
        async with serve_app(settings, plugins=CHATS_OPEN) as srv:
            # fill the pool: concurrent requests each hold a connection
            responses = await asyncio.gather(*(srv.client.post("/v1/chats", {"chat_name": f"c{i}"})
                                               for i in range(16)))
            assert {resp.status for resp in responses} == {201}
            assert srv.runtime.db.pool.get_stats()["pool_size"] >= 2
            # PostgreSQL "restarts" while this worker serves nothing: every connection it holds dies
            proxy.cut()
            proxy.restore()
            statuses = []
            for i in range(10):
                statuses.append((await srv.client.get("/ping_db")).status)
                statuses.append((await srv.client.post("/v1/chats", {"chat_name": f"after{i}"})).status)
            assert statuses == [200, 201] * 10, statuses
            concurrent = await asyncio.gather(*(srv.client.post("/v1/chats", {"chat_name": "x"}) for _ in range(8)))
            assert [resp.status for resp in concurrent] == [201] * 8
    finally:
        proxy.close()


async def test_ping_db_does_not_wait_for_a_busy_pool(env: dict[str, str]) -> None:
    async with serve_app({**env, "POOL_SIZE": "1", "DB_TIMEOUT": "5"}, plugins=()) as srv:
        assert (await srv.client.get("/ping_db")).status == 200
        async with srv.runtime.db.connection() as conn:  # the pool's only connection, busy
            busy = asyncio.ensure_future(conn.execute("SELECT pg_sleep(3)"))
            await asyncio.sleep(0)
            resp = await srv.client.get("/ping_db", timeout=2.5)
            assert resp.status == 200, resp  # the database is fine: the probe says so, at once
            await busy
