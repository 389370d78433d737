"""Throttle with the auth plugin: login attempts per user name and per client IP, and per-account request limits."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from messenger_throttle.backends import MemoryBackend, RedisBackend
from messenger_throttle.limiter import WINDOW
from support import Client, Response, TcpProxy, poll, serve_app
from throttle_support import assert_limited

ATTEMPTS = 3
WITH_AUTH = ("messenger_auth", "messenger_throttle")
PASSWORD = "correct horse"


def login_env(env: dict[str, str], **settings: str) -> dict[str, str]:
    """Auth and throttle; clients told apart by X-Real-IP (the test client is the trusted proxy)."""
    return {**env, "LOGIN_ATTEMPTS_PER_MINUTE": str(ATTEMPTS), "THROTTLE_RPS": "1000",
            "TRUSTED_PROXIES": "127.0.0.1", "AUTH_SCRYPT_N": "1024", **settings}


async def login(client: Client, user: str, password: str, ip: str) -> Response:
    """POST /v1/auth/login from client IP ``ip``."""
    return await client.post("/v1/auth/login", {"user_name": user, "password": password},
                             headers={"X-Real-IP": ip})


async def register(client: Client, *users: str) -> None:
    """Create accounts with PASSWORD."""
    for user in users:
        resp = await client.post("/v1/auth/register", {"user_name": user, "password": PASSWORD})
        assert resp.status == 201, resp.body


async def same_minute_ahead(seconds: float = 8.0) -> None:
    """Wait (bounded) until at least ``seconds`` are left in the calendar minute the limit counts in."""
    async def enough_left() -> bool:
        return 60 - time.time() % 60 >= seconds
    await poll(enough_left, timeout=seconds + 1, interval=0.2)


@pytest.mark.parametrize("cache_type", ["memory", "redis"])
async def test_failed_logins_over_the_limit_get_429_for_that_name_from_that_client(
        env: dict[str, str], cache_type: str) -> None:
    async with serve_app(login_env(env, CACHE_TYPE=cache_type), plugins=WITH_AUTH) as srv:
        await register(srv.client, "alice", "bob")
        await same_minute_ahead()
        wrong = [await login(srv.client, "alice", "guess", "10.0.0.1") for _ in range(ATTEMPTS)]
        assert [(r.status, r.json) for r in wrong] == [(400, {"message": "bad-password"})] * ATTEMPTS
        # From that client, alice is refused for the rest of the minute, even with the right password ...
        resp = await login(srv.client, "alice", PASSWORD, "10.0.0.1")
        assert_limited(resp)
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        assert abs(int(resp.headers["Retry-After"]) - (60 - time.time() % 60)) <= 2
        # ... but nobody locks alice out from another address, and that client still logs in as bob.
        resp = await login(srv.client, "alice", PASSWORD, "10.0.0.2")
        assert resp.status == 200 and len(resp.json["session_id"]) == 32
        resp = await login(srv.client, "bob", PASSWORD, "10.0.0.1")
        assert resp.status == 200
        # Unknown user names count as failures too.
        unknown = [await login(srv.client, "nobody", "x", "10.0.0.5") for _ in range(ATTEMPTS)]
        assert [r.status for r in unknown] == [400] * ATTEMPTS
        assert_limited(await login(srv.client, "nobody", "x", "10.0.0.5"))


@pytest.mark.parametrize("cache_type", ["memory", "redis"])
async def test_successful_logins_never_count(env: dict[str, str], cache_type: str) -> None:
    async with serve_app(login_env(env, CACHE_TYPE=cache_type), plugins=WITH_AUTH) as srv:
        users = [f"office{i}" for i in range(4)]
        await register(srv.client, *users)
        await same_minute_ahead()
        # A whole office behind one address logs in, many times each, past every per-minute limit.
        for _ in range(3):
            for user in users:
                resp = await login(srv.client, user, PASSWORD, "10.0.2.1")
                assert resp.status == 200, resp


async def test_failures_from_one_client_over_all_names_are_bounded(env: dict[str, str]) -> None:
    settings = login_env(env, LOGIN_FAILURES_PER_IP="5", LOGIN_ATTEMPTS_PER_MINUTE="100")
    async with serve_app(settings, plugins=WITH_AUTH) as srv:
        await register(srv.client, "frank")
        await same_minute_ahead()
        spray = [await login(srv.client, f"name{i}", "guess", "10.0.3.1") for i in range(5)]
        assert [r.status for r in spray] == [400] * 5
        assert_limited(await login(srv.client, "name99", "guess", "10.0.3.1"))
        assert_limited(await login(srv.client, "frank", PASSWORD, "10.0.3.1"))
        resp = await login(srv.client, "frank", PASSWORD, "10.0.3.2")
        assert resp.status == 200


async def test_registrations_per_client_are_limited(env: dict[str, str]) -> None:
    async with serve_app(login_env(env, REGISTER_PER_MINUTE="3"), plugins=WITH_AUTH) as srv:
        await same_minute_ahead()
        for i in range(3):
            resp = await srv.client.post("/v1/auth/register", {"user_name": f"reg{i}", "password": PASSWORD},
                                         headers={"X-Real-IP": "10.0.4.1"})
            assert resp.status == 201, resp
        resp = await srv.client.post("/v1/auth/register", {"user_name": "reg9", "password": PASSWORD},
                                     headers={"X-Real-IP": "10.0.4.1"})
        assert_limited(resp)
        resp = await srv.client.post("/v1/auth/register", {"user_name": "reg9", "password": PASSWORD},
                                     headers={"X-Real-IP": "10.0.4.2"})
        assert resp.status == 201
        # the refused one created nothing: reg9 exists once, from the other client
        resp = await srv.client.post("/v1/auth/login", {"user_name": "reg9", "password": PASSWORD},
                                     headers={"X-Real-IP": "10.0.4.3"})
        assert resp.status == 200


async def test_login_limit_holds_while_redis_is_down(env: dict[str, str]) -> None:
    proxy = TcpProxy(6379)
    settings = login_env(env, THROTTLE_BACKEND="redis", REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0")
    try:
        async with serve_app(settings, plugins=WITH_AUTH) as srv:
            await register(srv.client, "carol")
            await same_minute_ahead()
            proxy.cut()
            statuses = [(await login(srv.client, "carol", "guess", "10.0.1.1")).status for _ in range(ATTEMPTS + 1)]
            assert statuses == [400] * ATTEMPTS + [429]  # counted in this process meanwhile: never unlimited
            assert (await login(srv.client, "carol", PASSWORD, "10.0.1.2")).status == 200
    finally:
        proxy.close()


async def test_request_limit_is_per_account_when_there_is_a_session(env: dict[str, str]) -> None:
    rps = 4
    async with serve_app(login_env(env, THROTTLE_RPS=str(rps), TRUSTED_PROXIES=""), plugins=WITH_AUTH) as srv:
        await register(srv.client, "dave", "erin")
        sessions = {}
        for user in ("dave", "erin"):
            resp = await srv.client.post("/v1/auth/login", {"user_name": user, "password": PASSWORD})
            sessions[user] = srv.client.with_headers(Authorization=f"session_id {resp.json['session_id']}")

        # Wait out the anonymous window of 127.0.0.1 (registrations and logins filled it) without a
        # request: polling for a fresh window would itself count, and on a loaded machine, where the
        # logins' stamps leave the window one by one, it never found one.
        await asyncio.sleep(WINDOW + 0.1)
        # Same IP, three budgets: dave's account, erin's account, and the anonymous IP.
        dave = [await sessions["dave"].get("/no/such/path") for _ in range(rps + 1)]
        assert [r.status for r in dave] == [404] * rps + [429]
        assert_limited(dave[-1], rps)
        erin = await sessions["erin"].get("/no/such/path")
        assert (erin.status, erin.headers["X-RateLimit-Remaining"]) == (404, str(rps - 1))
        anonymous = await srv.client.get("/ping")
        assert (anonymous.status, anonymous.headers["X-RateLimit-Remaining"]) == (200, str(rps - 1))
        # A bad session is counted by IP and still gets its 401, with the rate headers.
        bad = await srv.client.get("/no/such/path", headers={"Authorization": "session_id " + "0" * 32})
        assert bad.status == 401 and bad.headers["X-RateLimit-Remaining"] == str(rps - 2)


async def test_attempts_are_refused_for_the_rest_of_the_period_only() -> None:
    wall = [120.0]  # the start of a calendar minute
    backend = MemoryBackend(wall_clock=lambda: wall[0])
    keys = [("login:key:alice", 2), ("login:ip:10.0.0.1", 2)]
    assert [(await backend.attempt(keys, 60)).allowed for _ in range(2)] == [True, True]
    wall[0] = 150.0
    refused = await backend.attempt(keys, 60)
    assert not refused.allowed and refused.retry_after_header == "30"
    wall[0] = 179.5
    assert (await backend.attempt([("login:key:bob", 2), ("login:ip:10.0.0.1", 2)], 60)).retry_after_header == "1"
    wall[0] = 180.0  # the next minute
    assert (await backend.attempt(keys, 60)).allowed


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_released_attempt_frees_its_place(kind: str, redis_keys: Any, env: dict[str, str]) -> None:
    backend = MemoryBackend() if kind == "memory" else RedisBackend(redis_keys, env["CACHE_PREFIX"] + "t:")
    await same_minute_ahead(3)
    keys = [("login:key:x", 2), ("login:ip:1", 3)]
    assert (await backend.attempt(keys, 60)).allowed
    await backend.release([key for key, _ in keys], 60)
    assert [(await backend.attempt(keys, 60)).allowed for _ in range(3)] == [True, True, False]
    await backend.release(["login:key:never-counted"], 60)
    assert (await backend.attempt([("login:key:never-counted", 1)], 60)).allowed
