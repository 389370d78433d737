"""``GET /health``: every configured dependency probed at once, each with a short timeout.

Outages go through TCP proxies in front of the shared PostgreSQL, Redis and RabbitMQ.  "Within a
second" is the client's own request timeout: a slower answer fails the request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from messenger_core.errors import ConfigError
from messenger_core.settings import load_core

from support import RMQ_URL, TcpProxy, assert_error, delete_rabbit_queue, poll, serve_app

PLUGINS = ("messenger_auth", "messenger_chats", "messenger_search", "messenger_throttle")


@pytest.fixture
def proxies() -> Iterator[dict[str, TcpProxy]]:
    made = {"postgres": TcpProxy(5432), "redis": TcpProxy(6379), "rabbitmq": TcpProxy(5672)}
    yield made
    for proxy in made.values():
        proxy.close()


@pytest.fixture
def proxied_env(env: dict[str, str], proxies: dict[str, TcpProxy]) -> Iterator[dict[str, str]]:
    """Every dependency configured, each behind its proxy."""
    yield {**env, "POSTGRES_HOSTS": f"127.0.0.1:{proxies['postgres'].port}",
           "REDIS_URL": f"redis://127.0.0.1:{proxies['redis'].port}/0", "CACHE_TYPE": "redis",
           "RMQ_URL": RMQ_URL.replace(":5672/", f":{proxies['rabbitmq'].port}/")}
    delete_rabbit_queue(env["SEARCH_QUEUE"], env["SEARCH_EXCHANGE"])


def checks_of(body: dict[str, object]) -> dict[str, bool]:
    checks = body["checks"]
    assert isinstance(checks, dict)
    for result in checks.values():
        assert set(result) == {"ok", "ms"} and isinstance(result["ms"], float), result
    return {name: result["ok"] for name, result in checks.items()}


async def test_every_dependency_up_is_ok_and_tells_nothing_about_hosts(proxied_env: dict[str, str],
                                                                       proxies: dict[str, TcpProxy]) -> None:
    async with serve_app(proxied_env, PLUGINS) as srv:
        resp = await srv.client.get("/health", timeout=1.0)
        assert resp.status == 200, resp
        assert resp.json["status"] == "ok"
        assert checks_of(resp.json) == {"postgres": True, "redis": True, "rabbitmq": True}
        assert set(resp.json) == {"status", "checks"}
        for secret in (b"127.0.0.1", str(proxies["redis"].port).encode(), b"guest", b"version"):
            assert secret not in resp.body
        # public: no session needed, and the course's probes are unchanged
        assert (await srv.client.get("/ping")).status == 200
        assert (await srv.client.get("/ping_db")).status == 200


async def test_only_configured_dependencies_are_listed(env: dict[str, str]) -> None:
    # memory cache, embedded worker: this process uses neither Redis nor RabbitMQ
    async with serve_app(env, ("messenger_chats",)) as srv:
        resp = await srv.client.get("/health", timeout=1.0)
        assert resp.status == 200 and resp.json["status"] == "ok", resp
        assert checks_of(resp.json) == {"postgres": True}


async def test_redis_and_rabbitmq_cut_is_degraded_within_a_second(proxied_env: dict[str, str],
                                                                  proxies: dict[str, TcpProxy]) -> None:
    async with serve_app(proxied_env, PLUGINS) as srv:
        assert (await srv.client.get("/health", timeout=1.0)).json["status"] == "ok"
        proxies["redis"].cut()
        proxies["rabbitmq"].cut()
        resp = await srv.client.get("/health", timeout=1.0)
        assert resp.status == 200, resp
        assert resp.json["status"] == "degraded"
        assert checks_of(resp.json) == {"postgres": True, "redis": False, "rabbitmq": False}
        # a silent partition (nothing answers, nothing is refused) is no slower: the probe times out
        proxies["redis"].restore()
        proxies["rabbitmq"].restore()
        proxies["redis"].stall()
        proxies["rabbitmq"].stall()
        resp = await srv.client.get("/health", timeout=1.0)
        assert resp.status == 200 and resp.json["status"] == "degraded", resp
        assert checks_of(resp.json) == {"postgres": True, "redis": False, "rabbitmq": False}
        proxies["redis"].restore()
        proxies["rabbitmq"].restore()

        async def healthy() -> bool:
            return (await srv.client.get("/health", timeout=1.0)).json["status"] == "ok"
        await poll(healthy, timeout=10)


async def test_postgres_cut_is_down_503_within_a_second(proxied_env: dict[str, str],
                                                        proxies: dict[str, TcpProxy]) -> None:
    async with serve_app(proxied_env, PLUGINS) as srv:
        assert (await srv.client.get("/health", timeout=1.0)).status == 200
        proxies["postgres"].cut()
        resp = await srv.client.get("/health", timeout=1.0)
        assert resp.status == 503, resp
        assert resp.json["status"] == "down"
        assert checks_of(resp.json) == {"postgres": False, "redis": True, "rabbitmq": True}
        assert (await srv.client.get("/ping_db", timeout=2.0)).status == 503  # unchanged
        proxies["postgres"].restore()

        async def back() -> bool:
            return (await srv.client.get("/health", timeout=1.0)).status == 200
        await poll(back, timeout=15)


async def test_postgres_stalled_is_down_503_within_a_second(proxied_env: dict[str, str],
                                                            proxies: dict[str, TcpProxy]) -> None:
    # a silent partition (packets dropped: no reset, no answer) costs the timeout, never a hang
    async with serve_app(proxied_env, PLUGINS) as srv:
        assert (await srv.client.get("/health", timeout=1.0)).status == 200
        proxies["postgres"].stall()
        try:
            for _ in range(3):  # the stuck probe is not waited for again
                resp = await srv.client.get("/health", timeout=1.0)
                assert resp.status == 503 and resp.json["status"] == "down", resp
                assert checks_of(resp.json) == {"postgres": False, "redis": True, "rabbitmq": True}
        finally:
            proxies["postgres"].restore()

        async def back() -> bool:
            return (await srv.client.get("/health", timeout=1.0)).status == 200
        await poll(back, timeout=15)


async def test_health_timeout_above_the_readiness_bound_holds_for_postgres_too(
        proxied_env: dict[str, str], proxies: dict[str, TcpProxy]) -> None:
    # /ping_db gives up 0.5 s after the probe it shares with /health began; /health waits HEALTH_TIMEOUT
    async with serve_app({**proxied_env, "HEALTH_TIMEOUT": "2"}, PLUGINS) as srv:
        assert (await srv.client.get("/health", timeout=3.0)).status == 200
        proxies["postgres"].stall()
        try:
            health = asyncio.ensure_future(srv.client.get("/health", timeout=5.0))
            assert_error(await srv.client.get("/ping_db", timeout=3.0), 503, "database-unavailable")
            assert not health.done()  # still waiting for the same probe
        finally:
            proxies["postgres"].restore()  # the held SELECT 1 goes through now, within /health's 2 s
        resp = await health
        assert resp.status == 200 and resp.json["status"] == "ok", resp
        assert checks_of(resp.json)["postgres"] is True


def test_health_timeout_is_at_most_the_probe_limit(env: dict[str, str]) -> None:
    # a PostgreSQL probe gives up after 2 s: a longer HEALTH_TIMEOUT could not be honoured
    assert load_core({**env, "HEALTH_TIMEOUT": "2"}).health_timeout == 2.0
    with pytest.raises(ConfigError, match="HEALTH_TIMEOUT"):
        load_core({**env, "HEALTH_TIMEOUT": "2.5"})
