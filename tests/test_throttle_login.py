"""Throttle with the auth plugin: login attempts per user name and per client IP, and per-account request limits."""

from __future__ import annotations

import time

import pytest

from messenger_throttle.backends import MemoryBackend
from support import Client, Response, TcpProxy, poll, serve_app
from throttle_support import LIMITED, assert_limited

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
async def test_login_attempts_over_the_limit_get_429_even_with_the_right_password(
        env: dict[str, str], cache_type: str) -> None:
    async with serve_app(login_env(env, CACHE_TYPE=cache_type), plugins=WITH_AUTH) as srv:
        await register(srv.client, "alice", "bob")
        await same_minute_ahead()
        wrong = [await login(srv.client, "alice", "guess", "10.0.0.1") for _ in range(ATTEMPTS)]
        assert [(r.status, r.json) for r in wrong] == [(400, {"message": "bad-password"})] * ATTEMPTS
        # The right password no longer helps, from this IP or any other, for the rest of the minute.
        for ip in ("10.0.0.1", "10.0.0.2"):
            resp = await login(srv.client, "alice", PASSWORD, ip)
            assert_limited(resp)
            assert 1 <= int(resp.headers["Retry-After"]) <= 60
            assert abs(int(resp.headers["Retry-After"]) - (60 - time.time() % 60)) <= 2
        # Another user is unaffected from another IP ...
        resp = await login(srv.client, "bob", PASSWORD, "10.0.0.3")
        assert resp.status == 200 and len(resp.json["session_id"]) == 32
        # ... but the IP that used up its attempts is refused for every user name.
        resp = await login(srv.client, "bob", PASSWORD, "10.0.0.1")
        assert (resp.status, resp.json) == (429, LIMITED)
        # Refused attempts did not touch the accounts: bob from a fresh IP still logs in.
        resp = await login(srv.client, "bob", PASSWORD, "10.0.0.4")
        assert resp.status == 200


async def test_login_limit_holds_while_redis_is_down(env: dict[str, str]) -> None:
    proxy = TcpProxy(6379)
    settings = login_env(env, THROTTLE_BACKEND="redis", REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0")
    try:
        async with serve_app(settings, plugins=WITH_AUTH) as srv:
            await register(srv.client, "carol")
            await same_minute_ahead()
            proxy.cut()
            statuses = [(await login(srv.client, "carol", PASSWORD, "10.0.1.1")).status for _ in range(ATTEMPTS + 1)]
            assert statuses == [200] * ATTEMPTS + [429]  # counted in this process meanwhile: never unlimited
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

        async def fresh_window() -> bool:  # the anonymous budget of 127.0.0.1 is full again
            resp = await srv.client.get("/ping")
            return resp.status == 200 and resp.headers["X-RateLimit-Remaining"] == str(rps - 1)
        await poll(fresh_window, timeout=5, interval=0.2)
        # Same IP, three budgets: dave's account, erin's account, and the anonymous IP.
        dave = [await sessions["dave"].get("/no/such/path") for _ in range(rps + 1)]
        assert [r.status for r in dave] == [404] * rps + [429]
        assert_limited(dave[-1], rps)
        erin = await sessions["erin"].get("/no/such/path")
        assert (erin.status, erin.headers["X-RateLimit-Remaining"]) == (404, str(rps - 1))
        anonymous = await srv.client.get("/ping")
        assert (anonymous.status, anonymous.headers["X-RateLimit-Remaining"]) == (200, str(rps - 2))
        # A bad session is counted by IP and still gets its 401, with the rate headers.
        bad = await srv.client.get("/no/such/path", headers={"Authorization": "session_id " + "0" * 32})
        assert bad.status == 401 and bad.headers["X-RateLimit-Remaining"] == str(rps - 3)


async def test_attempts_are_refused_for_the_rest_of_the_period_only() -> None:
    wall = [120.0]  # the start of a calendar minute
    backend = MemoryBackend(wall_clock=lambda: wall[0])
    keys = ["login:key:alice", "login:ip:10.0.0.1"]
    assert [(await backend.attempt(keys, 2, 60)).allowed for _ in range(2)] == [True, True]
    wall[0] = 150.0
    refused = await backend.attempt(keys, 2, 60)
    assert not refused.allowed and refused.retry_after_header == "30"
    wall[0] = 179.5
    assert (await backend.attempt(["login:key:bob", "login:ip:10.0.0.1"], 2, 60)).retry_after_header == "1"
    wall[0] = 180.0  # the next minute
    assert (await backend.attempt(keys, 2, 60)).allowed
