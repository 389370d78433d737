"""Where sessions live: Redis flushes, database outages, several workers, auth off or absent."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from auth_support import PROBE, authenticated, bearer, login, new_session, probe, session_group
from support import TcpProxy, assert_error, poll, serve_app, start_api

AUTH_ONLY = ("messenger_auth",)
REDIS_DB7 = "redis://127.0.0.1:6379/7"  # a database of our own: the flush test FLUSHDBs it


@pytest.fixture
async def redis7() -> aioredis.Redis:
    """A client of Redis database 7."""
    client = aioredis.Redis.from_url(REDIS_DB7)
    yield client
    await client.aclose()


async def test_sessions_survive_a_redis_flush_logged_out_ones_stay_out(
        env: dict[str, str], redis7: aioredis.Redis) -> None:
    settings = {**env, "CACHE_TYPE": "redis", "REDIS_URL": REDIS_DB7}
    prefix = settings["CACHE_PREFIX"]
    async with serve_app(settings, plugins=AUTH_ONLY) as srv:
        client = srv.client
        kept = await new_session(client, "vasya")
        ended = await login(client, "vasya")
        # an active session is cached with a TTL of what is left of its lifetime
        assert await redis7.exists(prefix + session_group(kept))
        assert 3_590_000 < await redis7.pttl(prefix + session_group(kept)) <= 3_600_000
        assert (await client.post("/v1/auth/logout", headers=bearer(ended))).status == 200
        assert not await redis7.exists(prefix + session_group(ended))
        assert_error(await probe(client, bearer(ended)), 401, "invalid-session-id")

        await redis7.flushdb()
        assert await authenticated(client, kept)  # from the table, and cached again
        assert await redis7.exists(prefix + session_group(kept))
        assert 0 < await redis7.pttl(prefix + session_group(kept)) <= 3_600_000
        assert_error(await probe(client, bearer(ended)), 401, "invalid-session-id")
        assert not await redis7.exists(prefix + session_group(ended))


@pytest.mark.parametrize("cache_type", ["memory", "redis"])
async def test_a_cached_session_needs_no_database(env: dict[str, str], cache_type: str) -> None:
    proxy = TcpProxy(5432)
    settings = {**env, "CACHE_TYPE": cache_type, "REDIS_URL": REDIS_DB7, "DB_TIMEOUT": "1",
                "POSTGRES_HOSTS": f"127.0.0.1:{proxy.port}"}
    try:
        async with serve_app(settings, plugins=AUTH_ONLY) as srv:
            client = srv.client
            session_id = await new_session(client, "vasya")
            proxy.cut()
            assert await authenticated(client, session_id)  # served by the cache alone
            assert_error(await probe(client, bearer(uuid.uuid4().hex)), 503, "database-unavailable")
            assert_error(await client.post("/v1/auth/login", {"user_name": "vasya", "password": "s3cret-pass"}),
                         503, "database-unavailable")
            assert_error(await client.post("/v1/auth/register", {"user_name": "petya", "password": "long enough"}),
                         503, "database-unavailable")
            proxy.restore()

            async def login_works() -> bool:
                resp = await client.post("/v1/auth/login", {"user_name": "vasya", "password": "s3cret-pass"})
                return resp.status == 200
            await poll(login_works, timeout=10, interval=0.2)
            assert await authenticated(client, session_id)
    finally:
        proxy.close()


async def test_auth_keeps_working_while_redis_is_down(env: dict[str, str]) -> None:
    proxy = TcpProxy(6379)
    settings = {**env, "CACHE_TYPE": "redis", "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/7"}
    try:
        async with serve_app(settings, plugins=AUTH_ONLY) as srv:
            client = srv.client
            before = await new_session(client, "vasya")
            proxy.cut()
            assert await authenticated(client, before)  # cache unreachable: the table answers
            during = await login(client, "vasya")
            assert await authenticated(client, during)
            # a logout works too: the row is ended and the sessions epoch moves on (test_auth_integrity.py)
            resp = await client.post("/v1/auth/logout", headers=bearer(before))
            assert (resp.status, resp.body) == (200, b"")
            assert_error(await probe(client, bearer(before)), 401, "invalid-session-id")
            assert await authenticated(client, during)
            await new_session(client, "petya")
            proxy.restore()
            assert_error(await probe(client, bearer(before)), 401, "invalid-session-id")
            assert await authenticated(client, during)
            resp = await client.post("/v1/auth/logout", headers=bearer(during))
            assert (resp.status, resp.body) == (200, b"")
            assert_error(await probe(client, bearer(during)), 401, "invalid-session-id")
    finally:
        proxy.close()


ACCESS = re.compile(r"\[(\d+)\] messenger\.access: (\d{3}) GET " + re.escape(PROBE) + r"\?probe=(\w+) ")


async def test_two_workers_share_sessions_through_the_table(env: dict[str, str], tmp_path: Path) -> None:
    """Memory cache, WORKERS=2: a session made in one worker works in both; a logout ends it in both."""
    password = f"pw-{uuid.uuid4().hex}"
    settings = {**env, "WORKERS": "2", "CACHE_TYPE": "memory", "MESSENGER_APPS": "messenger_auth",
                "ACCESS_LOG": "1", "LOG_LEVEL": "INFO"}
    proc, client = await start_api(settings, tmp_path / "api.log")
    try:
        session_id = await new_session(client, "vasya", password)
        seen: dict[str, set[str]] = {"404": set(), "401": set()}

        async def both_workers(expect: int, code: str) -> bool:
            tag = uuid.uuid4().hex
            resp = await client.get(f"{PROBE}?probe={tag}", headers=bearer(session_id))  # a new connection
            assert_error(resp, expect, code)
            for pid, status, logged in ACCESS.findall(proc.log):
                if logged == tag:
                    seen[status].add(pid)
            return len(seen[str(expect)]) == 2

        await poll(lambda: both_workers(404, "not-found"), timeout=20, interval=0)
        resp = await client.post("/v1/auth/logout", headers=bearer(session_id))
        assert (resp.status, resp.body) == (200, b"")
        await poll(lambda: both_workers(401, "invalid-session-id"), timeout=20, interval=0)
        assert seen["404"] == seen["401"]
        assert len(set(re.findall(r"serving http://\S+ \(pid (\d+)", proc.log))) == 2
        assert password not in proc.log
    finally:
        assert proc.stop() == 0


async def test_without_the_plugin_or_with_auth_disabled_chats_are_open(env: dict[str, str]) -> None:
    async with serve_app(env, plugins=("messenger_chats",)) as srv:
        resp = await srv.client.post("/v1/chats", {"chat_name": "Pupkin chat"})
        assert resp.status == 201 and len(resp.json["chat_id"]) == 32
        assert_error(await srv.client.post("/v1/auth/login", {"user_name": "a", "password": "b"}),
                     404, "not-found")
    async with serve_app({**env, "AUTH_DISABLED": "true"}, plugins=("messenger_auth", "messenger_chats")) as srv:
        resp = await srv.client.post("/v1/chats", {"chat_name": "Pupkin chat"})
        assert resp.status == 201 and len(resp.json["chat_id"]) == 32
        chat_id = resp.json["chat_id"]
        resp = await srv.client.post(f"/v1/chats/{chat_id}/users", {"user_name": "Vasya Pupkin"})
        assert resp.status == 201
        resp = await srv.client.get(f"/v1/chats/{chat_id}/messages?limit=1")
        assert resp.status == 200
    async with serve_app(env, plugins=("messenger_auth", "messenger_chats")) as srv:
        assert_error(await srv.client.post("/v1/chats", {"chat_name": "Pupkin chat"}), 401, "auth-failed")
        session_id = await new_session(srv.client, "vasya")
        resp = await srv.client.post("/v1/chats", {"chat_name": "Pupkin chat"}, headers=bearer(session_id))
        assert resp.status == 201 and len(resp.json["chat_id"]) == 32


async def test_an_api_process_without_the_plugin_is_open(env: dict[str, str], tmp_path: Path) -> None:
    proc, client = await start_api({**env, "MESSENGER_APPS": "messenger_chats"}, tmp_path / "api.log")
    try:
        resp = await client.post("/v1/chats", {"chat_name": "Pupkin chat"})
        assert resp.status == 201 and len(resp.json["chat_id"]) == 32
        assert_error(await client.post("/v1/auth/register", {"user_name": "a", "password": "b"}), 404, "not-found")
    finally:
        assert proc.stop() == 0
