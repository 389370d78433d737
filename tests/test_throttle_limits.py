"""Throttle plugin in one process: 429 past THROTTLE_RPS, the sliding window, the client key, Redis down."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio as aioredis

from messenger_throttle.backends import MemoryBackend, RedisBackend
from support import REDIS_URL, TcpProxy, poll, serve_app
from throttle_support import RATE_HEADERS, assert_limited, burst, statuses

from messenger_core.cache import redis_client
from messenger_core.errors import ConfigError
from messenger_core.settings import Config, load_core

RPS = 5
ONLY_THROTTLE = ("messenger_throttle",)


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_past_the_limit_429_then_passes_after_the_window(env: dict[str, str], backend: str) -> None:
    env.update(THROTTLE_RPS=str(RPS), THROTTLE_BACKEND=backend)
    async with serve_app(env, plugins=ONLY_THROTTLE) as srv:
        responses, took = await burst(srv.client, 2 * RPS)
        assert took < 0.9, f"the burst took {took:.2f}s, longer than the window: the machine is too slow"
        assert statuses(responses) == {200: RPS, 429: RPS}
        passed = [r for r in responses if r.status == 200]
        assert all(r.headers["X-RateLimit-Limit"] == str(RPS) for r in passed)
        assert sorted(int(r.headers["X-RateLimit-Remaining"]) for r in passed) == list(range(RPS))
        for resp in responses:
            if resp.status == 429:
                assert_limited(resp, RPS)
        # Keep knocking while refused: refusals are not counted, so the window still frees up.
        refused = 0

        async def passes() -> bool:
            nonlocal refused
            resp = await srv.client.get("/ping")
            refused += resp.status == 429
            return resp.status == 200
        await poll(passes, timeout=3.0, interval=0.02)
        assert refused >= 1


async def test_error_responses_carry_the_rate_headers(env: dict[str, str]) -> None:
    env.update(THROTTLE_RPS=str(RPS))
    async with serve_app(env, plugins=ONLY_THROTTLE) as srv:
        resp = await srv.client.get("/no/such/path")
        assert resp.status == 404
        assert resp.json == {"message": "not-found"}
        assert resp.headers["X-RateLimit-Limit"] == str(RPS)
        assert resp.headers["X-RateLimit-Remaining"] == str(RPS - 1)


async def test_redis_counters_are_prefixed_and_expire(env: dict[str, str]) -> None:
    env.update(THROTTLE_RPS=str(RPS), CACHE_TYPE="redis")  # THROTTLE_BACKEND empty: follows CACHE_TYPE
    async with serve_app(env, plugins=ONLY_THROTTLE) as srv:
        assert (await srv.client.get("/ping")).status == 200
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            keys = [key async for key in client.scan_iter(match=env["CACHE_PREFIX"] + "throttle:*")]
            assert keys == [(env["CACHE_PREFIX"] + "throttle:ip:127.0.0.1").encode()]
            assert 0 < await client.pttl(keys[0]) <= 2000
            assert await client.zcard(keys[0]) == 1
        finally:
            await client.aclose()


async def test_spoofed_forwarding_headers_do_not_change_the_key(env: dict[str, str]) -> None:
    env.update(THROTTLE_RPS=str(RPS))  # no TRUSTED_PROXIES: the socket peer is the client
    async with serve_app(env, plugins=ONLY_THROTTLE) as srv:
        spoofed = [{"X-Forwarded-For": f"10.1.0.{i}", "X-Real-IP": f"10.2.0.{i}"} for i in range(2 * RPS)]
        responses = [await srv.client.get("/ping", headers=headers) for headers in spoofed]
        assert [r.status for r in responses] == [200] * RPS + [429] * RPS


async def test_trusted_proxy_forwards_the_client_ip(env: dict[str, str]) -> None:
    env.update(THROTTLE_RPS=str(RPS), TRUSTED_PROXIES="127.0.0.1")
    async with serve_app(env, plugins=ONLY_THROTTLE) as srv:
        first = srv.client.with_headers(X_Real_IP="10.0.0.1")
        assert [(await first.get("/ping")).status for _ in range(RPS + 1)] == [200] * RPS + [429]
        # Another client behind the same proxy has its own budget.
        resp = await srv.client.get("/ping", headers={"X-Forwarded-For": "10.0.0.2"})
        assert resp.status == 200
        assert resp.headers["X-RateLimit-Remaining"] == str(RPS - 1)
        # A client cannot escape by prepending made-up hops: the proxy appends the real one last.
        hops = [await srv.client.get("/ping", headers={"X-Forwarded-For": f"6.6.6.{i}, 10.0.0.3"})
                for i in range(RPS + 1)]
        assert [r.status for r in hops] == [200] * RPS + [429]


async def test_redis_down_fails_open_with_one_log_line(env: dict[str, str],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    proxy = TcpProxy(6379)
    env.update(THROTTLE_RPS=str(RPS), THROTTLE_BACKEND="redis", REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0")
    caplog.set_level(logging.INFO, logger="messenger.throttle")
    try:
        async with serve_app(env, plugins=ONLY_THROTTLE) as srv:
            responses, _ = await burst(srv.client, RPS + 1)
            assert statuses(responses) == {200: RPS, 429: 1}
            proxy.cut()
            responses = [await srv.client.get("/ping") for _ in range(3 * RPS)]
            assert [r.status for r in responses] == [200] * (3 * RPS)
            assert all(r.headers["X-RateLimit-Remaining"] == str(RPS) for r in responses)
            outage_lines = [r for r in caplog.records if "throttle: redis unavailable" in r.getMessage()]
            assert len(outage_lines) == 1
            proxy.restore()

            async def limited_again() -> bool:
                answers, _ = await burst(srv.client, RPS + 1)
                return 429 in statuses(answers)
            await poll(limited_again, timeout=5.0, interval=0.1)
            assert any("throttle: redis is back" in r.getMessage() for r in caplog.records)
    finally:
        proxy.close()


async def test_nginx_throttling_removes_the_in_app_limiter(env: dict[str, str]) -> None:
    env.update(THROTTLE_RPS="2", NGINX_THROTTLING="1")
    async with serve_app(env, plugins=ONLY_THROTTLE) as srv:
        assert [hook.name for hook in srv.app.request_hooks] == []
        responses, _ = await burst(srv.client, 10)
        assert statuses(responses) == {200: 10}
        assert not any(name in responses[0].headers for name in RATE_HEADERS)


async def test_bad_settings_stop_start_up(env: dict[str, str]) -> None:
    env.update(THROTTLE_RPS="0")
    with pytest.raises(ConfigError, match="THROTTLE_RPS"):
        async with serve_app(env, plugins=ONLY_THROTTLE):
            pass


async def test_memory_backend_keeps_a_bounded_number_of_keys() -> None:
    now = [1000.0]
    backend = MemoryBackend(max_keys=3, clock=lambda: now[0])
    for i in range(10):
        assert (await backend.hit(f"ip:10.0.0.{i}", 2, 1.0)).allowed
    assert len(backend) == 3
    assert (await backend.hit("ip:10.0.0.9", 2, 1.0)).remaining == 0  # the most recent keys stay
    refused = await backend.hit("ip:10.0.0.9", 2, 1.0)
    assert not refused.allowed and refused.retry_after == pytest.approx(1.0)
    now[0] += 1.0
    assert (await backend.hit("ip:10.0.0.9", 2, 1.0)).allowed
    assert len(backend) == 1  # each call also forgets a few keys whose requests all left the window
    for _ in range(3):  # a lone client keeps its count while it sweeps
        await backend.hit("ip:10.0.0.9", 2, 1.0)
    assert len(backend) == 1 and not (await backend.hit("ip:10.0.0.9", 2, 1.0)).allowed


async def test_redis_backend_admits_exactly_the_limit_under_concurrency(env: dict[str, str]) -> None:
    backend = RedisBackend(redis_client(Config(load_core(env))), env["CACHE_PREFIX"] + "throttle:")
    try:
        # More calls in flight than redis-py's default pool allows (100): they wait, none fails open.
        decisions = await asyncio.gather(*(backend.hit("ip:10.5.5.5", 100, 1.0) for _ in range(300)))
        assert None not in decisions
        assert sum(d.allowed for d in decisions) == 100
        assert sorted(d.remaining for d in decisions if d.allowed) == list(range(100))
        assert all(0 < d.retry_after <= 1.0 for d in decisions if not d.allowed)
    finally:
        await backend.client.delete(env["CACHE_PREFIX"] + "throttle:ip:10.5.5.5")
        await backend.client.aclose()
