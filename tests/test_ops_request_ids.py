"""Request ids: on every response, kept from a trusted proxy only, on the log lines of the request and
of the search task it queued (embedded worker and ``messenger-consumer``); ``LOG_FORMAT=json``."""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from chats_support import join, new_chat, say
from search_support import consumer, wait_status
from search_support import rabbit_env_fixture  # noqa: F401  pylint: disable=unused-import
from support import free_port, poll, serve_app, start_api

HEX32 = re.compile(r"^[0-9a-f]{32}$")
ID = "X-Request-Id"


def json_lines(log: str) -> list[dict[str, Any]]:
    """Every line of a LOG_FORMAT=json log, each of which must be one JSON object."""
    records = []
    for line in log.splitlines():
        record = json.loads(line)
        assert {"time", "level", "logger", "message", "request_id", "pid"} <= set(record), record
        records.append(record)
    return records


async def test_every_response_has_an_id_a_trusted_proxy_may_give(env: dict[str, str]) -> None:
    async with serve_app(env) as srv:  # auth on
        seen = set()
        for path, status in (("/ping", 200), ("/v1/chats", 401), ("/no/such/path", 401), ("/docs/nope", 404)):
            resp = await srv.client.get(path)
            assert resp.status == status, (path, resp)
            assert HEX32.match(resp.headers[ID]), resp.headers.get(ID)
            seen.add(resp.headers[ID])
        assert len(seen) == 4  # a new one each
        # from a peer that is not a trusted proxy, a given id is ignored
        resp = await srv.client.get("/ping", headers={ID: "from-the-client-1"})
        assert HEX32.match(resp.headers[ID])
    async with serve_app({**env, "TRUSTED_PROXIES": "127.0.0.1"}) as srv:
        resp = await srv.client.get("/ping", headers={ID: "nginx-0f3a.2"})
        assert resp.headers[ID] == "nginx-0f3a.2"
        resp = await srv.client.get("/v1/chats", headers={ID: "nginx-0f3a.3"})
        assert resp.status == 401 and resp.headers[ID] == "nginx-0f3a.3"  # error responses too
        for bad in ("has space", "x" * 129, "semi;colon", "<script>"):
            resp = await srv.client.get("/ping", headers={ID: bad})
            assert HEX32.match(resp.headers[ID]), bad


async def test_json_lines_name_the_request_and_its_embedded_task(env: dict[str, str], tmp_path: Path) -> None:
    api, client = await start_api({**env, "AUTH_DISABLED": "1", "LOG_FORMAT": "json", "LOG_LEVEL": "INFO",
                                   "ACCESS_LOG": "1", "TRUSTED_PROXIES": "127.0.0.1",
                                   "MESSENGER_APPS": "messenger_chats,messenger_search"}, tmp_path / "api.log")
    try:
        chat = await new_chat(client)
        user = await join(client, chat)
        await say(client, chat, user, "a logged pangolin")
        resp = await client.post(f"/v1/chats/search?user_id={user}", {"message": "pangolin"},
                                 headers={ID: "proxy-id-42"})
        assert resp.status == 201 and resp.headers[ID] == "proxy-id-42"
        await wait_status(client, resp.json["task_id"], user_id=user)

        def lines_of(rid: str) -> list[dict[str, Any]]:
            return [r for r in json_lines(api.log) if r["request_id"] == rid]

        async def task_logged() -> bool:
            return any(r["logger"] == "messenger.broker" for r in lines_of("proxy-id-42"))
        await poll(task_logged, timeout=10)
        mine = lines_of("proxy-id-42")
        access = [r for r in mine if r["logger"] == "messenger.access"]
        assert len(access) == 1
        assert {k: access[0][k] for k in ("method", "route", "path", "status")} == {
            "method": "POST", "route": "/v1/chats/search", "path": "/v1/chats/search", "status": 201}
        assert isinstance(access[0]["duration_ms"], float)
        assert any(r["logger"] == "messenger.broker" and "task search done" in r["message"] for r in mine)
        lines = json_lines(api.log)
        assert any(r["message"].startswith("serving http://") and r["request_id"] is None for r in lines)
    finally:
        assert api.stop() == 0


def get_metrics(port: int, source: str) -> tuple[int, str]:
    """GET /metrics of a consumer from a chosen loopback source address."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


async def test_the_consumer_logs_the_request_id_and_serves_its_metrics(rabbit_env: dict[str, str],
                                                                       tmp_path: Path) -> None:
    port = free_port()
    trusting = {**rabbit_env, "TRUSTED_PROXIES": "127.0.0.1"}
    async with serve_app(trusting, ("messenger_chats", "messenger_search")) as srv:
        client = srv.client
        chat = await new_chat(client)
        user = await join(client, chat)
        await say(client, chat, user, "a queued okapi")
        worker = await consumer(rabbit_env, tmp_path / "consumer.log", LOG_FORMAT="json",
                                METRICS_PORT=str(port), METRICS_ALLOW="127.0.0.2")
        try:
            resp = await client.post(f"/v1/chats/search?user_id={user}", {"message": "okapi"},
                                     headers={ID: "okapi-request-7"})
            assert resp.status == 201
            await wait_status(client, resp.json["task_id"], user_id=user)

            async def logged() -> bool:
                return any(r["request_id"] == "okapi-request-7" and "task search done" in r["message"]
                           for r in json_lines(worker.log))
            await poll(logged, timeout=10)
            assert all(r["request_id"] in (None, "okapi-request-7") for r in json_lines(worker.log))

            status, _ = get_metrics(port, "127.0.0.1")  # outside METRICS_ALLOW
            assert status == 404
            status, text = get_metrics(port, "127.0.0.2")
            assert status == 200
            done = [s.value for f in text_string_to_metric_families(text) for s in f.samples
                    if s.name == "messenger_tasks_total" and s.labels == {"task": "search", "outcome": "done"}]
            assert done == [1.0]
        finally:
            assert worker.stop() == 0
