"""Outages: PostgreSQL, Redis and RabbitMQ cut off by a TCP proxy (the shared servers keep running)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator

import pika
import pytest

from messenger_core.broker import RabbitQueue, Task
from messenger_core.cache import MemoryCache, RedisCache, redis_client
from messenger_core import DatabaseUnavailable, ServiceUnavailable
from messenger_core.settings import Config, load_core
from support import RMQ_URL, TcpProxy, poll, serve_app


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(5432)
    yield proxy
    proxy.close()


async def test_ping_db_503_within_2s_while_postgres_is_cut_then_recovers(
        env: dict[str, str], pg_proxy: TcpProxy, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="messenger.db")
    async with serve_app({**env, "POSTGRES_HOSTS": f"127.0.0.1:{pg_proxy.port}"}, plugins=()) as srv:
        assert (await srv.client.get("/ping_db")).status == 200
        pg_proxy.cut()
        started = time.monotonic()
        resp = await srv.client.get("/ping_db")
        elapsed = time.monotonic() - started
        assert resp.status == 503
        assert resp.json == {"message": "database-unavailable"}
        assert elapsed < 2.0
        # still 503 (not a hang, not a 500) while it stays away; /ping never depends on it
        started = time.monotonic()
        assert (await srv.client.get("/ping_db")).status == 503
        assert time.monotonic() - started < 2.0
        assert (await srv.client.get("/ping")).status == 200
        pg_proxy.restore()

        async def healthy() -> bool:
            return (await srv.client.get("/ping_db")).status == 200
        await poll(healthy, timeout=10)
    assert "database went away" in caplog.text
    assert "database is back" in caplog.text


async def test_a_lane_keeps_its_connection_answers_503_while_postgres_is_cut_then_recovers(
        env: dict[str, str], pg_proxy: TcpProxy) -> None:
    async with serve_app({**env, "POSTGRES_HOSTS": f"127.0.0.1:{pg_proxy.port}", "DB_TIMEOUT": "1"},
                         plugins=()) as srv:
        lane = srv.runtime.db.lane()
        backends = set()
        for _ in range(5):
            backends.add((await lane.fetchall("SELECT pg_backend_pid() AS pid"))[0]["pid"])
            await srv.runtime.db.fetchone("SELECT 1")  # the pool, in between
        assert len(backends) == 1  # one connection, kept between calls
        pg_proxy.cut()
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable) as err:
            await lane.fetchall("SELECT 1 AS one")
        assert err.value.code == "database-unavailable"
        assert time.monotonic() - started < 2.0
        pg_proxy.restore()

        async def back() -> bool:
            try:
                return await lane.fetchall("SELECT 1 AS one") == [{"one": 1}]
            except DatabaseUnavailable:
                return False
        await poll(back, timeout=10)
        after = (await lane.fetchall("SELECT pg_backend_pid() AS pid"))[0]["pid"]
        assert after not in backends  # the broken connection was dropped, a new one opened
        assert (await srv.client.get("/ping_db")).status == 200  # and the pool serves as before


async def test_a_lane_takes_no_connection_from_the_pool(env: dict[str, str]) -> None:
    async with serve_app({**env, "POOL_SIZE": "1", "DB_TIMEOUT": "1"}, plugins=()) as srv:
        lane = srv.runtime.db.lane()
        assert await lane.fetchall("SELECT 1 AS one") == [{"one": 1}]
        # the pool's only connection is free: a held one would make this wait out DB_TIMEOUT (503)
        assert await srv.runtime.db.fetchone("SELECT 2 AS two") == {"two": 2}


def _config(redis_port: int) -> Config:
    return Config(load_core({"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "CACHE_TYPE": "redis",
                             "CACHE_PREFIX": f"mt-outage-{redis_port}:"}))


async def test_redis_cache_degrades_to_a_miss_and_comes_back(caplog: pytest.LogCaptureFixture) -> None:
    proxy = TcpProxy(6379)
    config = _config(proxy.port)
    cache = RedisCache(redis_client(config), config.cache_prefix, 30)
    try:
        await cache.set("k", b"v")
        assert await cache.get("k") == b"v"
        proxy.cut()
        started = time.monotonic()
        assert await cache.get("k") is None  # a miss, no exception
        await cache.set("k2", b"v2")  # a no-op, no exception
        assert await cache.group_token("g") is None  # "do not cache now"
        assert time.monotonic() - started < 5
        assert "redis unavailable" in caplog.text
        proxy.restore()

        async def back() -> bool:
            return await cache.get("k") == b"v"
        await poll(back, timeout=10)
    finally:
        await cache.delete("k", "k2")
        await cache.close()
        proxy.close()


async def test_an_invalidation_missed_during_an_outage_is_replayed_when_redis_is_back() -> None:
    proxy = TcpProxy(6379)
    config = _config(proxy.port)
    cache = RedisCache(redis_client(config), config.cache_prefix, 30)
    direct = RedisCache(redis_client(_config(6379)), config.cache_prefix, 30)  # another process, not cut off
    try:
        await cache.group_set("session", "s", b"active", await cache.group_token("session"))
        proxy.cut()
        await cache.invalidate("session")  # e.g. a logout while this process cannot reach Redis
        assert await direct.group_get("session", "s") == b"active"  # Redis kept the entry
        proxy.restore()

        async def replayed() -> bool:
            await cache.get("anything")  # the first call that reaches Redis replays the invalidation
            return await direct.group_get("session", "s") is None
        await poll(replayed, timeout=10)
    finally:
        await direct.delete("session", "session:gen")
        await cache.close()
        await direct.close()
        proxy.close()


async def test_cache_groups_refuse_a_write_that_raced_an_invalidation() -> None:
    config = _config(6379)
    cache = RedisCache(redis_client(config), config.cache_prefix, 30)
    try:
        token = await cache.group_token("chat")
        await cache.group_set("chat", "p1", b"fresh", token)
        assert await cache.group_get("chat", "p1") == b"fresh"
        stale_token = await cache.group_token("chat")
        await cache.invalidate("chat")  # a writer committed after the reader took its token
        assert await cache.group_get("chat", "p1") is None
        await cache.group_set("chat", "p1", b"stale", stale_token)
        assert await cache.group_get("chat", "p1") is None
        await cache.group_set("chat", "p1", b"new", await cache.group_token("chat"))
        assert await cache.group_get("chat", "p1") == b"new"
    finally:
        await cache.delete("chat", "chat:gen")
        await cache.close()


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_one_invalidate_call_makes_several_groups_stale(backend: str) -> None:
    config = _config(6379)
    cache: RedisCache | MemoryCache = (RedisCache(redis_client(config), config.cache_prefix, 30)
                                       if backend == "redis" else MemoryCache(100, 30, shared=True))
    groups = ["multi-a", "multi-b", "multi-c"]
    try:
        tokens = {group: await cache.group_token(group) for group in groups}
        for group in groups:
            await cache.group_set(group, "f", group.encode(), tokens[group])
        await cache.invalidate("multi-a", "multi-c")
        assert await cache.group_get("multi-a", "f") is None
        assert await cache.group_get("multi-b", "f") == b"multi-b"  # not named: untouched
        assert await cache.group_get("multi-c", "f") is None
        await cache.group_set("multi-c", "f", b"stale", tokens["multi-c"])  # an old token is refused
        assert await cache.group_get("multi-c", "f") is None
        await cache.invalidate()  # nothing named: nothing happens
        assert await cache.group_get("multi-b", "f") == b"multi-b"
    finally:
        await cache.delete(*groups, *(group + ":gen" for group in groups))
        await cache.close()


async def test_rabbitmq_publish_fails_cleanly_then_works_again(env: dict[str, str]) -> None:
    proxy = TcpProxy(5672)
    name = env["SEARCH_QUEUE"] + "_outage"
    task = Task("outage", handler=lambda **_: asyncio.sleep(0), exchange=name, routing_key=name, queue=name)
    queue = RabbitQueue({"outage": task}, f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F")
    try:
        await queue.publish("outage", {"n": 1})
        proxy.cut()
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable) as err:
            await queue.publish("outage", {"n": 2})
        assert err.value.code == "service-unavailable"
        assert time.monotonic() - started < 8
        proxy.restore()
        await queue.publish("outage", {"n": 3})
    finally:
        await queue.close()
        proxy.close()
    assert _drain_and_delete(name) == [1, 3]  # exactly the confirmed messages reached the queue


def _drain_and_delete(name: str) -> list[int]:
    """The payload numbers waiting in the queue; then the queue and exchange are removed."""
    conn = pika.BlockingConnection(pika.URLParameters(RMQ_URL))
    found = []
    try:
        channel = conn.channel()
        while True:
            method, _, body = channel.basic_get(name, auto_ack=True)
            if method is None:
                break
            found.append(json.loads(body)["payload"]["n"])
        channel.queue_delete(name)
        channel.exchange_delete(name)
    finally:
        conn.close()
    return found
