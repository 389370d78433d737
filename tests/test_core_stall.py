"""A stalled PostgreSQL (a silent partition: connections stay open, nothing comes back) costs a request
``DB_TIMEOUT``, not ``DB_TIMEOUT`` plus psycopg's server-side cancel of the query (up to 5 s to connect and
send it, 5 s more waiting for the query to end), for a query through the pool and one on a Lane.

The yardstick is the old behaviour itself: the same query through the same stalled proxy on a bare
psycopg connection under ``asyncio.timeout(DB_TIMEOUT)``, started at the same moment as the request.
Its timeout makes psycopg cancel the query on the server, which cannot get through either, so it ends
long after ``DB_TIMEOUT``; the request must answer 503 before it.  Once the network flows again the
first requests succeed (the connection that was in use was discarded, not given back broken).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

import psycopg
import pytest

from chats_support import join, new_chat, say
from messenger_core import DatabaseUnavailable
from messenger_chats.state import store_of
from support import AppServer, Response, TcpProxy, assert_error, conninfo, poll, serve_app

DB_TIMEOUT = 1.0


@asynccontextmanager
async def stalling_server(env: dict[str, str], **overrides: str) -> AsyncIterator[tuple[AppServer, TcpProxy]]:
    """The chats app (auth off) reaching PostgreSQL through a proxy that the test can stall."""
    proxy = TcpProxy(5432)
    settings = {**env, "POSTGRES_HOSTS": f"127.0.0.1:{proxy.port}", "DB_TIMEOUT": str(DB_TIMEOUT),
                "AUTH_DISABLED": "1", **overrides}
    try:
        async with serve_app(settings, plugins=("messenger_chats",)) as srv:
            yield srv, proxy
    finally:
        proxy.close()


async def bare_connection(proxy: TcpProxy, database: str) -> psycopg.AsyncConnection:
    """A plain psycopg connection through the proxy (opened while it still passes bytes)."""
    return await psycopg.AsyncConnection.connect(conninfo(database).replace("port=5432", f"port={proxy.port}"),
                                                 autocommit=True)


async def answers_before_the_yardstick(request: Awaitable[Response], bare: psycopg.AsyncConnection) -> Response:
    """Run ``request`` and the yardstick together; the request's answer, which must come first."""
    async def yardstick() -> None:
        async with asyncio.timeout(DB_TIMEOUT):
            await bare.execute("SELECT 1")

    answer = asyncio.ensure_future(request)
    old_way = asyncio.ensure_future(yardstick())
    try:
        done, _ = await asyncio.wait({answer, old_way}, return_when=asyncio.FIRST_COMPLETED)
        assert answer in done and old_way not in done, \
            "the request waited for a server-side cancel that the stalled network cannot carry"
        return answer.result()
    finally:
        while not old_way.done():  # a cancel interrupted again: psycopg closes the connection at once
            old_way.cancel()
            await asyncio.wait({old_way}, timeout=0.1)
        await asyncio.gather(old_way, return_exceptions=True)
        await bare.close()


async def back_to_normal(srv: AppServer) -> None:
    async def ready() -> bool:
        return (await srv.client.get("/ping_db", timeout=30)).status == 200
    await poll(ready, timeout=20)


async def test_a_pooled_query_on_a_stalled_postgres_answers_503_without_waiting_for_a_server_cancel(
        env: dict[str, str], database: str) -> None:
    async with stalling_server(env, POOL_SIZE="1") as (srv, proxy):
        assert (await srv.client.post("/v1/chats", {"chat_name": "before"})).status == 201
        bare = await bare_connection(proxy, database)
        proxy.stall()
        resp = await answers_before_the_yardstick(srv.client.post("/v1/chats", {"chat_name": "x"}, timeout=60), bare)
        assert_error(resp, 503, "database-unavailable")
        proxy.restore()
        await back_to_normal(srv)
        for n in range(5):  # the pool's only connection was replaced: no request meets the stalled one
            assert (await srv.client.post("/v1/chats", {"chat_name": f"after{n}"})).status == 201


async def test_a_lane_query_on_a_stalled_postgres_answers_503_without_waiting_for_a_server_cancel(
        env: dict[str, str], database: str) -> None:
    async with stalling_server(env) as (srv, proxy):
        chat = await new_chat(srv.client)
        user = await join(srv.client, chat)
        await say(srv.client, chat, user, "before")  # the chat and the member are now facts in memory
        pool = srv.runtime.db.pool
        checkouts = pool.get_stats().get("requests_num", 0)
        bare = await bare_connection(proxy, database)
        proxy.stall()
        resp = await answers_before_the_yardstick(
            srv.client.post(f"/v1/chats/{chat}/messages?user_id={user}", {"message": "x"}, timeout=60), bare)
        assert_error(resp, 503, "database-unavailable")
        assert pool.get_stats().get("requests_num", 0) == checkouts, "the post did not go through the lane"
        assert store_of(srv.runtime).posts is not None
        proxy.restore()
        await back_to_normal(srv)
        for n in range(3):
            await say(srv.client, chat, user, f"after{n}")


async def test_a_query_abandoned_at_its_deadline_is_still_cancelled_on_the_server(
        env: dict[str, str], database: str) -> None:
    # a slow server, not a stalled network: the caller is not kept waiting, and the cancel still goes out
    async with serve_app({**env, "DB_TIMEOUT": str(DB_TIMEOUT)}, plugins=()) as srv:
        with pytest.raises(DatabaseUnavailable):
            await srv.runtime.db.fetchone("SELECT pg_sleep(60) AS abandoned")

        async def gone() -> bool:
            async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as conn:
                cur = await conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                         "AND query LIKE %s AND pid <> pg_backend_pid()",
                                         (database, "%AS abandoned%"))
                row = await cur.fetchone()
                return row is not None and row[0] == 0
        await poll(gone, timeout=10)
        assert await srv.runtime.db.fetchone("SELECT 1 AS one") == {"one": 1}


async def test_a_transaction_stalled_between_its_queries_rolls_back_without_hanging(
        env: dict[str, str], database: str) -> None:
    async with stalling_server(env) as (srv, proxy):
        db = srv.runtime.db
        bare = await bare_connection(proxy, database)
        stalled = asyncio.Event()

        async def as_a_request() -> str:
            try:
                async with db.transaction() as conn:
                    await conn.execute("SELECT 1")
                    proxy.stall()
                    stalled.set()
                    await asyncio.sleep(3600)  # e.g. a call to another service: the deadline ends it
            except DatabaseUnavailable as exc:
                return exc.code
            return "no error"
        outcome = asyncio.ensure_future(as_a_request())
        await stalled.wait()
        # the way out of the block rolls back: on the stalled connection, that would wait for ever
        assert await answers_before_the_yardstick(outcome, bare) == "database-unavailable"
        proxy.restore()
        await back_to_normal(srv)
        assert await db.fetchone("SELECT 1 AS one") == {"one": 1}
