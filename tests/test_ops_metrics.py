"""``GET /metrics``: Prometheus text over every worker, parsed with prometheus_client's own parser.

Which worker answered a request is read from the JSON access lines: each names its request id
(also in the response's ``X-Request-Id``) and the worker's pid.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from messenger_core.web import MAX_BODY_BYTES
from prometheus_client.parser import text_string_to_metric_families

from chats_support import join, new_chat, read_page, say
from events_support import Stream
from search_support import search_server, start_search, wait_status
from support import Client, Process, assert_error, base_env, poll, serve_app, start_api

REQUESTS = "messenger_http_requests"


def samples(text: str, family: str) -> list[Any]:
    """The samples of one metric family of a scrape."""
    for metric in text_string_to_metric_families(text):
        if metric.name == family:
            return list(metric.samples)
    return []


def total(text: str, family: str, suffix: str = "_total", **labels: str) -> float:
    """The sum of a family's samples named ``family + suffix`` whose labels include ``labels``."""
    return sum(s.value for s in samples(text, family)
               if s.name == family + suffix and all(s.labels.get(k) == v for k, v in labels.items()))


def answered_by(proc: Process) -> dict[str, int]:
    """Request id -> pid of the worker that wrote its access line."""
    seen = {}
    for line in proc.log.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record["logger"] == "messenger.access":
                seen[record["request_id"]] = record["pid"]
    return seen


async def ping_ok(client: Client) -> bool:
    """Served (not counted in /ping's total: the route is /ping_db)."""
    try:
        return (await client.get("/ping_db", timeout=2)).status == 200
    except ConnectionError:
        return False


async def scrape(client: Client) -> tuple[str, str]:
    resp = await client.get("/metrics")
    assert resp.status == 200, resp
    assert resp.headers["Content-Type"].startswith("text/plain")
    return resp.body.decode(), resp.headers["X-Request-Id"]


async def test_the_sum_over_two_workers_whichever_answers_the_scrape(database: str, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left by an earlier run")  # emptied at start
    env = base_env(database, WORKERS=2, LOG_FORMAT="json", LOG_LEVEL="INFO", ACCESS_LOG=1,
                   METRICS_DIR=metrics_dir, MESSENGER_APPS="messenger_chats", AUTH_DISABLED=1)
    proc, client = await start_api(env, tmp_path / "api.log")  # ready: /ping_db, not counted below
    try:
        assert not (metrics_dir / "counter_999999.db").exists()
        sent: list[str] = []

        async def ping() -> None:
            resp = await client.get("/ping")  # a new connection each: the kernel spreads them
            assert resp.status == 200
            sent.append(resp.headers["X-Request-Id"])

        async def both_workers_served() -> bool:
            for _ in range(10):
                await ping()
            seen = answered_by(proc)
            return len({seen[rid] for rid in sent if rid in seen}) == 2
        await poll(both_workers_served, timeout=20)
        pids = set(answered_by(proc).values())
        assert len(pids) == 2

        scrapers: set[int] = set()

        async def every_worker_sums_all() -> bool:
            text, rid = await scrape(client)
            assert total(text, REQUESTS, method="GET", route="/ping", status="200") == len(sent)
            pid = answered_by(proc).get(rid)
            if pid is not None:
                scrapers.add(pid)
            return scrapers == pids
        await poll(every_worker_sums_all, timeout=20)

        # a worker killed and replaced: its counts stay, its live gauges go
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)

        async def replaced() -> bool:
            return "starting another" in proc.log
        await poll(replaced, timeout=20)
        await poll(lambda: ping_ok(client), timeout=20)
        for _ in range(5):
            await ping()
        text, _ = await scrape(client)
        assert total(text, REQUESTS, method="GET", route="/ping", status="200") == len(sent)
        assert not list(metrics_dir.glob(f"gauge_livesum_{victim}.db"))
        assert list(metrics_dir.glob(f"counter_{victim}.db"))
    finally:
        assert proc.stop() == 0
        assert "Traceback" not in proc.log, proc.log


async def test_a_client_outside_metrics_allow_gets_404(env: dict[str, str]) -> None:
    async with serve_app({**env, "METRICS_ALLOW": "10.0.0.0/8"}, ("messenger_chats",)) as srv:
        assert_error(await srv.client.get("/metrics"), 404, "not-found")
    async with serve_app({**env, "TRUSTED_PROXIES": "127.0.0.1"}, ("messenger_chats",)) as srv:
        assert (await srv.client.get("/metrics")).status == 200
        # behind a trusted proxy, the client is the one it forwards
        assert_error(await srv.client.get("/metrics", headers={"X-Real-IP": "203.0.113.7"}), 404, "not-found")
        assert (await srv.client.get("/metrics", headers={"X-Real-IP": "127.0.0.5"})).status == 200


async def test_route_patterns_cache_groups_post_batches_and_tasks(env: dict[str, str]) -> None:
    # one in-process server: its registry is the test process's, so compare before and after
    async with search_server(env) as srv:
        client = srv.client
        before, _ = await scrape(client)
        chat = await new_chat(client, "metrics")
        member = await join(client, chat, "ann")
        for i in range(3):
            await say(client, chat, member, f"counted message {i}")
        for _ in range(2):
            resp = await client.get(f"/v1/chats/{chat}/messages?limit=10")
            assert resp.status == 200
        assert (await client.get("/no/such/path/123")).status == 404
        task_id = await start_search(client, "counted", member)
        await wait_status(client, task_id, user_id=member)
        after, _ = await scrape(client)

        def grew(family: str, suffix: str = "_total", **labels: str) -> float:
            return total(after, family, suffix, **labels) - total(before, family, suffix, **labels)

        route = "/v1/chats/{chat_id}/messages"
        assert grew(REQUESTS, method="POST", route=route, status="201") == 3
        assert grew(REQUESTS, method="GET", route=route, status="200") == 2
        assert grew(REQUESTS, route="unmatched", status="404") == 1
        labels = {s.labels.get("route") for s in samples(after, REQUESTS)}
        assert not any(chat in (label or "") for label in labels)  # never a raw path
        assert grew("messenger_http_request_duration_seconds", "_count", route=route) == 5
        # the memory cache: the second read of the page hit, the first missed
        assert grew("messenger_cache_hits", cache="memory", group="chats:tail") >= 1
        assert grew("messenger_cache_misses", cache="memory", group="chats:tail") >= 1
        groups = {s.labels["group"] for s in samples(after, "messenger_cache_hits")}
        assert not any(chat in group for group in groups)
        # the chats plugin's own metric, through the public surface
        assert grew("messenger_chats_post_batch_size", "_count") >= 1
        assert grew("messenger_chats_post_batch_size", "_sum") == 3
        # the search task, by outcome and duration
        assert grew("messenger_tasks", task="search", outcome="done") == 1
        assert grew("messenger_task_duration_seconds", "_count", task="search", outcome="done") == 1

        async def pool_sampled() -> bool:  # each worker samples its pool every second
            return total((await scrape(client))[0], "messenger_db_pool_connections", "") >= 1
        await poll(pool_sampled, timeout=5)


async def gauge_is(client: Client, family: str, value: float) -> bool:
    """Whether a scrape shows ``family`` (a gauge without labels, summed) at ``value``."""
    text, _ = await scrape(client)
    found = [s.value for s in samples(text, family) if s.name == family]
    return bool(found) and sum(found) == value


async def test_open_streams_and_held_long_polls_by_value(env: dict[str, str]) -> None:
    async with serve_app({**env, "AUTH_DISABLED": "1"}, ("messenger_chats", "messenger_events")) as srv:
        client = srv.client
        for family in ("messenger_streams_open", "messenger_longpolls_held"):
            await poll(lambda family=family: gauge_is(client, family, 0), timeout=5)
        streams = [await Stream.open(srv.url) for _ in range(2)]
        for stream in streams:
            await stream.ready()
        await poll(lambda: gauge_is(client, "messenger_streams_open", 2), timeout=5)

        chat = await new_chat(client)
        user = await join(client, chat)
        _, start = await read_page(client, chat, 5)
        held = [asyncio.ensure_future(client.get(f"/v1/chats/{chat}/messages?limit=5&from={start}&wait=30",
                                                 timeout=40)) for _ in range(3)]
        await poll(lambda: gauge_is(client, "messenger_longpolls_held", 3), timeout=5)
        sent = await say(client, chat, user, "wakes the three")
        for resp in await asyncio.gather(*held):
            assert resp.status == 200 and [m["message_id"] for m in resp.json["messages"]] == [sent], resp
        await poll(lambda: gauge_is(client, "messenger_longpolls_held", 0), timeout=5)

        streams.pop().close()
        await poll(lambda: gauge_is(client, "messenger_streams_open", 1), timeout=5)
        streams.pop().close()
        await poll(lambda: gauge_is(client, "messenger_streams_open", 0), timeout=5)


async def test_pool_in_use_and_waiting_while_the_pool_is_held(env: dict[str, str]) -> None:
    settings = {**env, "POOL_SIZE": "1", "DB_TIMEOUT": "10", "AUTH_DISABLED": "1"}
    async with serve_app(settings, ("messenger_chats",)) as srv:
        client = srv.client
        assert (await client.post("/v1/chats", {"chat_name": "warm"})).status == 201  # the pool is open
        pool = srv.runtime.db.pool
        held = await pool.getconn()  # the pool's only connection
        try:
            waiting = asyncio.ensure_future(client.post("/v1/chats", {"chat_name": "queued"}, timeout=30))

            async def saturated() -> bool:  # sampled every second
                text, _ = await scrape(client)
                return (total(text, "messenger_db_pool_connections", ""),
                        total(text, "messenger_db_pool_connections_in_use", ""),
                        total(text, "messenger_db_pool_requests_waiting", "")) == (1, 1, 1)
            await poll(saturated, timeout=10)
            assert not waiting.done()
        finally:
            await pool.putconn(held)
        assert (await waiting).status == 201

        async def idle() -> bool:
            text, _ = await scrape(client)
            return (total(text, "messenger_db_pool_connections_in_use", ""),
                    total(text, "messenger_db_pool_requests_waiting", "")) == (0, 0)
        await poll(idle, timeout=10)


async def test_the_real_time_gauges_come_from_their_plugins(database: str, tmp_path: Path) -> None:
    # declared by the chats and events plugins, not the core: a process without the events plugin has
    # no stream gauge; the chats plugin exports its long-poll gauge from the start (0)
    env = base_env(database, MESSENGER_APPS="messenger_chats", AUTH_DISABLED=1)
    proc, client = await start_api(env, tmp_path / "api.log")
    try:
        text, _ = await scrape(client)
        names = {family.name for family in text_string_to_metric_families(text)}
        assert "messenger_streams_open" not in names
        assert [s.value for s in samples(text, "messenger_longpolls_held")] == [0.0]
    finally:
        assert proc.stop() == 0


async def test_the_apps_own_413_has_a_request_id_a_count_and_an_access_line(
        env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="messenger.access")
    too_big = b"x" * (MAX_BODY_BYTES + 1)
    settings = {**env, "TRUSTED_PROXIES": "127.0.0.1", "AUTH_DISABLED": "1", "ACCESS_LOG": "1"}
    async with serve_app(settings, ("messenger_chats",)) as srv:
        client = srv.client
        before, _ = await scrape(client)
        # announced by Content-Length: refused when the headers arrive
        resp = await client.request("POST", "/v1/chats", raw=too_big, headers={"X-Request-Id": "proxy-413.1"})
        assert_error(resp, 413, "payload-too-large")
        assert resp.headers["X-Request-Id"] == "proxy-413.1"  # a trusted proxy's id kept
        resp = await client.request("POST", "/no/such/route", raw=too_big, headers={"X-Request-Id": "bad id"})
        assert_error(resp, 413, "payload-too-large")
        made = resp.headers["X-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made), made
        # chunked: refused once past the limit
        host, port = srv.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/chats HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"X-Request-Id: proxy-413.2\r\n\r\n")
        try:
            for _ in range(MAX_BODY_BYTES // 65536 + 2):
                writer.write(b"10000\r\n" + b" " * 65536 + b"\r\n")
                await writer.drain()
        except ConnectionError:
            pass  # the server stops reading once it has answered
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode("latin1")
        writer.close()
        assert head.startswith("HTTP/1.1 413 "), head
        assert "\r\nX-Request-Id: proxy-413.2\r\n" in head, head
        after, _ = await scrape(client)

    def grew(**labels: str) -> float:
        return total(after, REQUESTS, **labels) - total(before, REQUESTS, **labels)
    assert grew(method="POST", route="/v1/chats", status="413") == 2
    assert grew(method="POST", route="unmatched", status="413") == 1
    lines = {r.request_id: r for r in caplog.records if r.name == "messenger.access" and r.status == 413}
    assert set(lines) == {"proxy-413.1", "proxy-413.2", made}, caplog.text
    assert lines[made].route == "unmatched" and lines["proxy-413.1"].route == "/v1/chats"
