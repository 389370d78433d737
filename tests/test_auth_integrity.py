"""What Redis holds is no longer believed on its own (issue 13, "Found by reading").

* A session or a membership fact written into Redis by someone other than the service (anyone who can
  write to Redis) is refused: each cached entry carries an HMAC under ``CACHE_SECRET`` that binds it to
  the row it was read from, and an entry whose tag does not match is treated as absent, so PostgreSQL
  decides.
* A logout that cannot evict the session from Redis (cut off, or Redis down) still answers 200 and ends
  the session everywhere at once: it bumps the sessions epoch in PostgreSQL, which every cached entry is
  sealed under and every process follows over LISTEN.  A logout that cannot reach PostgreSQL answers 503
  and changes nothing.
* Ended session rows are deleted, in bounded batches, by every API process, never the same row twice.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from auth_support import authenticated, bearer, login, new_session, probe, session_group
from chats_support import join, new_chat, page, say
from events_support import Stream
from support import BIN, AppServer, TcpProxy, assert_error, poll, serve_app, sql, start_api

AUTH_ONLY = ("messenger_auth",)
AUTH_AND_CHATS = ("messenger_auth", "messenger_chats")
WITH_STREAMS = ("messenger_auth", "messenger_chats", "messenger_events")
FAST_HASH = {"AUTH_SCRYPT_N": "1024"}  # tests need no brute-force resistance


def session_key(prefix: str, session_id: str) -> str:
    """The Redis key the server reads a session from."""
    return prefix + session_group(session_id)


async def account_id(database: str, user_name: str) -> str:
    rows = await sql(database, "SELECT id FROM accounts WHERE user_name = %s", (user_name,))
    return rows[0][0].hex


@asynccontextmanager
async def redis_server(env: dict[str, str], plugins: tuple[str, ...] = AUTH_ONLY) -> AsyncIterator[AppServer]:
    async with serve_app({**env, **FAST_HASH, "CACHE_TYPE": "redis"}, plugins=plugins) as srv:
        yield srv


# ---- forged entries -------------------------------------------------------------------------------

async def test_a_session_forged_in_redis_is_refused(env: dict[str, str], database: str,
                                                    redis_keys: aioredis.Redis) -> None:
    async with redis_server(env) as srv:
        real = await new_session(srv.client, "vasya")
        assert await authenticated(srv.client, real)
        victim = await account_id(database, "vasya")
        now = time.time()
        forged = uuid.uuid4().hex  # no row: nobody ever logged in with it
        entry = json.dumps({"a": victim, "c": now, "e": now + 3600})
        await redis_keys.hset(session_key(env["CACHE_PREFIX"], forged), "s", entry)
        # a copy of a real entry under another id is refused too: the tag names the key it was made for
        genuine = await redis_keys.hget(session_key(env["CACHE_PREFIX"], real), "s")
        assert genuine is not None
        copied = uuid.uuid4().hex
        await redis_keys.hset(session_key(env["CACHE_PREFIX"], copied), "s", genuine)
        for session_id in (forged, copied):
            for _ in range(3):
                assert_error(await probe(srv.client, bearer(session_id)), 401, "invalid-session-id")
        assert await authenticated(srv.client, real)


async def test_a_tampered_session_entry_is_refused_and_the_table_decides(
        env: dict[str, str], database: str, redis_keys: aioredis.Redis) -> None:
    """A real session, expired, put back into Redis as if it had just begun: refused, the row says expired."""
    async with redis_server({**env, "AUTH_TOKEN_LIFETIME": "1"}) as srv:
        session_id = await new_session(srv.client, "vasya")

        async def expired() -> bool:
            resp = await probe(srv.client, bearer(session_id))
            return resp.status == 401 and resp.json == {"message": "session-id-expired"}
        await poll(expired, timeout=10)
        now = time.time()
        entry = json.dumps({"a": await account_id(database, "vasya"), "c": now, "e": now + 3600})
        key = session_key(env["CACHE_PREFIX"], session_id)
        await redis_keys.hset(key, "s", entry)
        await redis_keys.pexpire(key, 3_600_000)
        for _ in range(3):
            assert_error(await probe(srv.client, bearer(session_id)), 401, "session-id-expired")


async def test_a_membership_fact_forged_in_redis_is_refused(env: dict[str, str], database: str,
                                                            redis_keys: aioredis.Redis) -> None:
    async with redis_server(env, AUTH_AND_CHATS) as srv:
        alice = srv.client.with_headers(Authorization=f"session_id {await new_session(srv.client, 'alice')}")
        bob = srv.client.with_headers(Authorization=f"session_id {await new_session(srv.client, 'bob')}")
        chat = await new_chat(alice, "Alice's chat")
        await say(alice, chat, await join(alice, chat, "Alice"), "for members only")
        assert_error(await page(bob, chat, 10), 404, "chat-not-found")
        # "bob's account has a member in the chat" (the chat never changed: version 0, no suffix)
        bob_account = await account_id(database, "bob")
        await redis_keys.set(f"{env['CACHE_PREFIX']}chats:{chat}:account:{bob_account}", b"1", px=3_600_000)
        for _ in range(3):
            assert_error(await page(bob, chat, 10), 404, "chat-not-found")
        resp = await page(alice, chat, 10)
        assert resp.status == 200 and [m["text"] for m in resp.json["messages"]] == ["for members only"]


# ---- logout while Redis is unreachable ----------------------------------------------------------------

@asynccontextmanager
async def two_processes_one_behind_a_proxy(env: dict[str, str]) -> AsyncIterator[tuple[AppServer, AppServer, TcpProxy]]:
    """Two processes sharing the Redis cache; the second reaches Redis through a proxy the test can cut."""
    proxy = TcpProxy(6379)
    try:
        async with redis_server(env) as other, \
                redis_server({**env, "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"}) as cut:
            yield other, cut, proxy
    finally:
        proxy.close()


async def sessions_epoch(database: str) -> int:
    rows = await sql(database, "SELECT epoch FROM sessions_epoch")
    return rows[0][0]


async def refused(servers: tuple[AppServer, ...], session_id: str, times: int = 5) -> None:
    """Every probe of every server: 401 invalid-session-id."""
    for srv in servers:
        for _ in range(times):
            assert_error(await probe(srv.client, bearer(session_id)), 401, "invalid-session-id")


async def accepted(servers: tuple[AppServer, ...], session_id: str) -> None:
    for srv in servers:
        assert await authenticated(srv.client, session_id)


async def trusting_redis(srv: AppServer) -> bool:
    """Whether the server knows the sessions epoch (its LISTEN connection is live): it reads Redis then."""
    epoch = getattr(srv.runtime.state["messenger_auth"], "epoch", None)
    return epoch is None or epoch.current() is not None  # None: a server without an epoch trusts Redis


@pytest.mark.parametrize(("outage", "near_items"), [("cut", "10000"), ("stall", "10000"), ("cut", "0")],
                         ids=["cut", "stall", "cut-without-near-cache"])
async def test_a_logout_in_a_process_cut_off_from_redis_ends_the_session_everywhere(
        env: dict[str, str], database: str, redis_keys: aioredis.Redis, outage: str, near_items: str) -> None:
    """A's Redis is cut (B still reads Redis, which still holds the entry): 200, and 401 in A and B at once,
    after A's Redis is back, and in a process started later; another session is untouched throughout."""
    settings = {**env, "NEAR_CACHE_MAX_ITEMS": near_items}
    async with two_processes_one_behind_a_proxy(settings) as (other, cut, proxy):
        session_id = await new_session(other.client, "vasya")
        kept = await login(other.client, "vasya")
        for srv in (other, cut):
            await poll(lambda srv=srv: trusting_redis(srv))
        for _ in range(2):  # each reads it from Redis and holds it near
            await accepted((other, cut), session_id)
            await accepted((other, cut), kept)
        getattr(proxy, outage)()
        resp = await cut.client.post("/v1/auth/logout", headers=bearer(session_id))
        assert (resp.status, resp.body) == (200, b"")
        assert await redis_keys.exists(session_key(env["CACHE_PREFIX"], session_id))  # what B still reads
        assert await sessions_epoch(database) == 1
        await refused((other, cut), session_id, times=5 if outage == "cut" else 2)
        await accepted((other, cut), kept)
        proxy.restore()
        await refused((other, cut), session_id)
        await accepted((other, cut), kept)
        async with redis_server(settings) as later:
            await poll(lambda: trusting_redis(later))
            await refused((later,), session_id)
            await accepted((later,), kept)


async def test_a_logout_outlives_the_process_that_could_not_reach_redis(
        env: dict[str, str], redis_keys: aioredis.Redis) -> None:
    """The issue's case: the process that logged out while cut off from Redis stops before Redis is back
    (what it meant to evict is forgotten), and the entry stays in Redis: still refused by everyone."""
    proxy = TcpProxy(6379)
    try:
        async with redis_server(env) as other:
            session_id = await new_session(other.client, "vasya")
            async with redis_server({**env, "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"}) as cut:
                for srv in (other, cut):
                    await poll(lambda srv=srv: trusting_redis(srv))
                await accepted((other, cut, other, cut), session_id)
                proxy.cut()
                resp = await cut.client.post("/v1/auth/logout", headers=bearer(session_id))
                assert (resp.status, resp.body) == (200, b"")
            proxy.restore()
            assert await redis_keys.exists(session_key(env["CACHE_PREFIX"], session_id))
            await refused((other,), session_id)
            async with redis_server(env) as later:
                await poll(lambda: trusting_redis(later))
                await refused((later, other), session_id)
            assert await redis_keys.exists(session_key(env["CACHE_PREFIX"], session_id))
    finally:
        proxy.close()


async def test_a_logout_cut_off_from_redis_closes_the_sessions_streams_in_other_processes(
        env: dict[str, str]) -> None:
    proxy = TcpProxy(6379)
    try:
        async with redis_server(env, WITH_STREAMS) as other, \
                redis_server({**env, "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"}, WITH_STREAMS) as cut:
            session_id = await new_session(other.client, "vasya")
            stream = await Stream.open(other.url, bearer(session_id))
            await stream.ready()
            proxy.cut()
            resp = await cut.client.post("/v1/auth/logout", headers=bearer(session_id))
            assert (resp.status, resp.body) == (200, b"")
            assert await stream.closed() == (4401, [{"type": "error", "message": "invalid-session-id"}])
            for srv in (other, cut):
                stream = await Stream.open(srv.url, bearer(session_id))
                assert await stream.closed() == (4401, [{"type": "error", "message": "invalid-session-id"}])
    finally:
        proxy.close()


async def test_a_logout_during_a_total_redis_outage_ends_the_session_everywhere(env: dict[str, str]) -> None:
    proxies = (TcpProxy(6379), TcpProxy(6379))
    try:
        async with redis_server({**env, "REDIS_URL": f"redis://127.0.0.1:{proxies[0].port}/0"}) as first, \
                redis_server({**env, "REDIS_URL": f"redis://127.0.0.1:{proxies[1].port}/0"}) as second:
            session_id = await new_session(first.client, "vasya")
            kept = await login(first.client, "vasya")
            for srv in (first, second):
                await poll(lambda srv=srv: trusting_redis(srv))
            await accepted((first, second, first, second), session_id)
            for proxy in proxies:
                proxy.cut()
            resp = await first.client.post("/v1/auth/logout", headers=bearer(session_id))
            assert (resp.status, resp.body) == (200, b"")
            await refused((first, second), session_id)
            await accepted((first, second), kept)  # the table answers
            for proxy in proxies:
                proxy.restore()
            await refused((first, second), session_id)
            await accepted((first, second), kept)
    finally:
        for proxy in proxies:
            proxy.close()


async def test_a_logout_while_postgresql_is_down_is_503_and_changes_nothing(
        env: dict[str, str], database: str) -> None:
    proxy = TcpProxy(5432)
    settings = {**env, "POSTGRES_HOSTS": f"127.0.0.1:{proxy.port}", "DB_TIMEOUT": "1"}
    try:
        async with redis_server(settings) as first, redis_server(settings) as second:
            session_id = await new_session(first.client, "vasya")
            await accepted((first, second, first, second), session_id)
            proxy.cut()
            resp = await first.client.post("/v1/auth/logout", headers=bearer(session_id))
            assert_error(resp, 503, "database-unavailable")
            proxy.restore()

            async def valid_in(srv: AppServer) -> bool:
                resp = await probe(srv.client, bearer(session_id))
                assert resp.status in (404, 503), resp  # never 401: the session was not ended
                return resp.status == 404
            for srv in (first, second):
                await poll(lambda srv=srv: valid_in(srv), timeout=15, interval=0.2)
            await accepted((first, second, first, second), session_id)
            resp = await second.client.post("/v1/auth/logout", headers=bearer(session_id))
            assert (resp.status, resp.body) == (200, b"")
            await refused((first, second), session_id)
        assert await sessions_epoch(database) == 0  # Redis was reachable: evicted, the epoch never moved
    finally:
        proxy.close()


# ---- cleaning the sessions table ---------------------------------------------------------------------------

BATCH_LINE = re.compile(r"sessions cleanup: deleted (\d+) row\(s\) in a batch of at most (\d+)")

INSERT_DEAD = """
INSERT INTO sessions (id, account_id, created_at, expires_at, logged_out_at)
SELECT gen_random_uuid(), %s, now() - interval '2 days', now() - interval '2 days' + interval '1 hour',
       CASE WHEN n %% 3 = 0 THEN now() - interval '2 days' END
FROM generate_series(1, %s) AS n
"""


async def test_ended_sessions_are_deleted_in_bounded_batches_by_every_process(
        env: dict[str, str], database: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="messenger.auth")
    settings = {**env, **FAST_HASH, "AUTH_SESSIONS_CLEANUP_INTERVAL": "1", "AUTH_SESSIONS_CLEANUP_BATCH": "40"}
    async with serve_app(settings, plugins=AUTH_ONLY) as first:
        live = [await new_session(first.client, "vasya"), await login(first.client, "vasya")]
        logged_out = await login(first.client, "vasya")
        assert (await first.client.post("/v1/auth/logout", headers=bearer(logged_out))).status == 200
        # expired yesterday, but kept for a day (AUTH_SESSIONS_KEEP_EXPIRED): it still answers
        # session-id-expired rather than invalid-session-id
        recent = uuid.uuid4()
        await sql(database, "INSERT INTO sessions (id, account_id, created_at, expires_at) "
                            "VALUES (%s, %s, now() - interval '2 hours', now() - interval '1 hour')",
                  (recent, uuid.UUID(await account_id(database, "vasya"))))
        await sql(database, INSERT_DEAD, (uuid.UUID(await account_id(database, "vasya")), 600))
        async with serve_app(settings, plugins=AUTH_ONLY) as second:

            async def cleaned() -> bool:
                rows = await sql(database, "SELECT count(*) FROM sessions")
                return rows[0][0] == len(live) + 1
            await poll(cleaned, timeout=30, interval=0.2)
            for srv in (first, second):
                for session_id in live:
                    assert await authenticated(srv.client, session_id)
                assert_error(await probe(srv.client, bearer(logged_out)), 401, "invalid-session-id")
                assert_error(await probe(srv.client, bearer(recent.hex)), 401, "session-id-expired")
    batches = [(int(n), int(bound)) for n, bound in BATCH_LINE.findall(caplog.text)]
    assert sum(n for n, _ in batches) == 600 + 1  # every dead row once, the logged-out one included
    assert all(0 < n <= bound == 40 for n, bound in batches), batches
    assert len(batches) >= 601 // 40


# ---- the secret ----------------------------------------------------------------------------------------------

async def test_without_cache_secret_a_start_warns_once_and_its_workers_share_a_random_key(
        env: dict[str, str], tmp_path: Path) -> None:
    settings = {key: value for key, value in env.items() if key != "CACHE_SECRET"}
    settings.update(FAST_HASH, CACHE_TYPE="redis", WORKERS="2", MESSENGER_APPS="messenger_auth")
    proc, client = await start_api(settings, tmp_path / "api.log")
    try:
        session_id = await new_session(client, "vasya")
        for _ in range(20):  # new connections: the kernel spreads them over both workers
            assert await authenticated(client, session_id)
            assert await authenticated(client, await login(client, "vasya"))
    finally:
        assert proc.stop() == 0
    assert proc.log.count("CACHE_SECRET is not set") == 1, proc.log
    assert "refused" not in proc.log  # each worker opened what the other sealed


def test_a_short_cache_secret_is_a_bad_setting(env: dict[str, str]) -> None:
    done = subprocess.run([str(BIN / "messenger-api"), "settings"], env={**os.environ, **env, "CACHE_SECRET": "short"},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "CACHE_SECRET='short'" in done.stderr and "32 characters" in done.stderr, done
