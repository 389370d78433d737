"""What Redis holds is no longer believed on its own (issue 13, "Found by reading").

* A session or a membership fact written into Redis by someone other than the service (anyone who can
  write to Redis) is refused: each cached entry carries an HMAC under ``CACHE_SECRET`` that binds it to
  the row it was read from, and an entry whose tag does not match is treated as absent, so PostgreSQL
  decides.
* A logout that cannot evict the session from Redis (and so from the other processes) answers 503
  and changes nothing: the session keeps working everywhere, consistently, and the client may retry.
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
from support import BIN, AppServer, TcpProxy, assert_error, poll, serve_app, sql, start_api

AUTH_ONLY = ("messenger_auth",)
AUTH_AND_CHATS = ("messenger_auth", "messenger_chats")
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


@pytest.mark.parametrize(("outage", "near_items"), [("cut", "10000"), ("stall", "10000"), ("cut", "0")],
                         ids=["cut", "stall", "cut-without-near-cache"])
async def test_a_logout_that_cannot_reach_redis_is_503_and_changes_nothing(env: dict[str, str], outage: str,
                                                                           near_items: str) -> None:
    async with two_processes_one_behind_a_proxy({**env, "NEAR_CACHE_MAX_ITEMS": near_items}) as (other, cut, proxy):
        session_id = await new_session(other.client, "vasya")
        for srv in (other, cut, other, cut):  # each holds it near (the other one from its own copy)
            assert await authenticated(srv.client, session_id)
        getattr(proxy, outage)()
        resp = await cut.client.post("/v1/auth/logout", headers=bearer(session_id))
        assert_error(resp, 503, "service-unavailable")
        # nothing half done: the session works in both processes, again and again
        for _ in range(5):
            assert await authenticated(other.client, session_id)
            assert await authenticated(cut.client, session_id)
        proxy.restore()

        async def logged_out() -> bool:
            resp = await cut.client.post("/v1/auth/logout", headers=bearer(session_id))
            assert resp.status in (200, 503), resp
            return resp.status == 200
        await poll(logged_out, timeout=15, interval=0.2)
        for srv in (other, cut):
            for _ in range(5):
                assert_error(await probe(srv.client, bearer(session_id)), 401, "invalid-session-id")


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
