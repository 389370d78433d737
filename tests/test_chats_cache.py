"""The message page cache: both backends, two worker processes, and PostgreSQL cut off."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from chats_support import chats_server, join, new_chat, page, say
from messenger_chats.store import ChatStore
from support import Client, Response, TcpProxy, assert_error, conninfo, poll, start_api


async def rewrite_text_behind_the_cache(database: str, message_id: str, text: str) -> None:
    """Change a stored message in SQL (the API never does): a page that still shows the old text came from the cache."""
    async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as conn:
        await conn.execute("UPDATE messages SET text = %s WHERE id = %s", (text, uuid.UUID(message_id)))


def texts(resp: Response) -> list[str]:
    """The texts of a 200 page."""
    assert resp.status == 200, resp
    return [m["text"] for m in resp.json["messages"]]


@pytest.mark.parametrize("cache_type", ["memory", "redis"])
async def test_read_post_read_serves_cached_pages_and_drops_stale_ones(
        env: dict[str, str], database: str, cache_type: str) -> None:
    async with chats_server(env, CACHE_TYPE=cache_type) as srv, \
            chats_server(env, CHATS_CACHE_PAGES=0) as uncached:
        client, cache = srv.client, srv.runtime.cache
        assert cache.shared  # one process: partial pages may be cached too
        chat = await new_chat(client)
        user = await join(client, chat)
        ids = [await say(client, chat, user, f"m{n}") for n in range(3)]
        chat_uuid = uuid.UUID(chat)

        tail = await page(client, chat, 10)            # partial page: the chat's tail group
        full = await page(client, chat, 2)             # full page: a plain key, never invalidated
        assert texts(tail) == ["m0", "m1", "m2"] and texts(full) == ["m0", "m1"]
        assert await cache.group_get(ChatStore.tail_group(chat_uuid), "0:10") == tail.body
        assert await cache.get(ChatStore.full_page_key(chat_uuid, 0, 2)) == full.body
        # a cached response is byte-identical to one computed without any cache
        assert (await page(uncached.client, chat, 10)).body == tail.body
        assert (await page(uncached.client, chat, 2)).body == full.body

        await rewrite_text_behind_the_cache(database, ids[0], "rewritten")
        assert (await page(client, chat, 10)).body == tail.body  # served from the cache
        assert texts(await page(uncached.client, chat, 10))[0] == "rewritten"

        new_id = await say(client, chat, user, "m3")  # a new message makes the tail stale at once
        assert await cache.group_get(ChatStore.tail_group(chat_uuid), "0:10") is None
        after = await page(client, chat, 10)
        assert texts(after) == ["rewritten", "m1", "m2", "m3"]
        assert after.json["messages"][-1]["message_id"] == new_id
        assert after.body == (await page(uncached.client, chat, 10)).body
        # the full page cannot change through the API, so it stays cached
        assert (await page(client, chat, 2)).body == full.body


async def test_pages_larger_than_the_bound_are_not_cached(env: dict[str, str], database: str) -> None:
    async with chats_server(env, CHATS_PAGE_CACHE_MAX_BYTES=400) as srv:
        client, cache = srv.client, srv.runtime.cache
        chat = await new_chat(client)
        user = await join(client, chat)
        short = await say(client, chat, user, "short")
        long = await say(client, chat, user, "long " * 100)
        small, big = await page(client, chat, 1), await page(client, chat, 2)
        assert len(small.body) <= 400 < len(big.body)
        chat_uuid = uuid.UUID(chat)
        assert await cache.get(ChatStore.full_page_key(chat_uuid, 0, 1)) == small.body
        assert await cache.get(ChatStore.full_page_key(chat_uuid, 0, 2)) is None
        await rewrite_text_behind_the_cache(database, short, "edited")
        await rewrite_text_behind_the_cache(database, long, "also edited")
        assert texts(await page(client, chat, 1)) == ["short"]  # cached
        assert texts(await page(client, chat, 2)) == ["edited", "also edited"]  # read again


def serving_pids(log: str) -> set[str]:
    """Pids of the workers that logged an access line for a chats request."""
    return set(re.findall(r"\[(\d+)\] messenger\.access: \d+ \w+ /v1/chats", log))


@pytest.mark.parametrize("cache_type", ["memory", "redis"])
async def test_two_workers_never_serve_a_stale_page(
        env: dict[str, str], database: str, tmp_path: Path, cache_type: str) -> None:
    proc, client = await start_api({**env, "WORKERS": "2", "CACHE_TYPE": cache_type,
                                    "MESSENGER_APPS": "messenger_chats", "LOG_LEVEL": "INFO",
                                    "ACCESS_LOG": "1"}, tmp_path / "api.log")
    try:
        chat = await new_chat(client)
        user = await join(client, chat)
        ids = [await say(client, chat, user, f"m{number}") for number in range(4)]

        async def read_everywhere(expected: list[str]) -> None:
            for _ in range(12):  # a new connection each time: both workers answer
                assert texts(await page(client, chat, 10)) == expected
                assert texts(await page(client, chat, 2)) == ["m0", "m1"]

        await read_everywhere(["m0", "m1", "m2", "m3"])
        await rewrite_text_behind_the_cache(database, ids[3], "rewritten")
        if cache_type == "redis":  # the tail page is shared: every worker serves the cached copy
            await read_everywhere(["m0", "m1", "m2", "m3"])
        else:  # a worker's memory cannot be invalidated by another: tails are never cached there
            await read_everywhere(["m0", "m1", "m2", "rewritten"])
        for number in range(4, 6):  # whichever worker takes the post, no worker serves the old tail
            await say(client, chat, user, f"m{number}")
            await read_everywhere(["m0", "m1", "m2", "rewritten"] + [f"m{n}" for n in range(4, number + 1)])

        async def both_served() -> bool:
            if len(serving_pids(proc.log)) >= 2:
                return True
            await page(client, chat, 10)
            return False
        await poll(both_served, timeout=10)
    finally:
        assert proc.stop() == 0


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(5432)
    yield proxy
    proxy.close()


@pytest.mark.parametrize("cache_type", ["memory", "redis"])
async def test_cached_pages_are_served_while_postgres_is_cut_off(
        env: dict[str, str], pg_proxy: TcpProxy, cache_type: str) -> None:
    async with chats_server(env, CACHE_TYPE=cache_type, POSTGRES_HOSTS=f"127.0.0.1:{pg_proxy.port}",
                            DB_TIMEOUT=0.5) as srv:
        client = srv.client
        chat = await new_chat(client)
        user = await join(client, chat)
        for number in range(3):
            await say(client, chat, user, f"m{number}")
        tail, full = await page(client, chat, 10), await page(client, chat, 2)
        next_full = await page(client, chat, 2, full.json["next"]["iterator"])
        assert texts(tail) == ["m0", "m1", "m2"] and texts(next_full) == ["m2"]
        assert (await client.get("/ping_db")).status == 200

        pg_proxy.cut()
        assert_error(await client.get("/ping_db"), 503, "database-unavailable")
        assert (await page(client, chat, 10)).body == tail.body
        assert (await page(client, chat, 2)).body == full.body
        assert (await page(client, chat, 2, full.json["next"]["iterator"])).body == next_full.body
        # anything else needs the database: 503, never a 500 or a hang
        started = time.monotonic()
        assert_error(await page(client, chat, 3), 503, "database-unavailable")
        assert time.monotonic() - started < 2.0
        assert_error(await client.post(f"/v1/chats/{chat}/messages?user_id={user}", {"message": "lost"}),
                     503, "database-unavailable")
        assert_error(await client.post(f"/v1/chats/{chat}/users", {"user_name": "late"}),
                     503, "database-unavailable")
        assert_error(await client.post("/v1/chats", {"chat_name": "later"}), 503, "database-unavailable")
        assert (await page(client, chat, 10)).body == tail.body

        pg_proxy.restore()

        async def healthy() -> bool:
            return (await client.get("/ping_db")).status == 200
        await poll(healthy, timeout=10)
        await say(client, chat, user, "m3")
        assert texts(await page(client, chat, 10)) == ["m0", "m1", "m2", "m3"]
        assert texts(await page(client, chat, 3)) == ["m0", "m1", "m2"]


async def test_a_redis_outage_costs_cache_hits_and_no_stale_page_outlives_it(env: dict[str, str]) -> None:
    proxy = TcpProxy(6379)
    try:
        async with chats_server(env, CACHE_TYPE="redis", REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0",
                                CHATS_TAIL_PAGE_TTL=600) as srv:
            client: Client = srv.client
            chat = await new_chat(client)
            user = await join(client, chat)
            await say(client, chat, user, "m0")
            cached_tail = await page(client, chat, 10)
            assert texts(cached_tail) == ["m0"]
            assert (await page(client, chat, 10)).body == cached_tail.body
            proxy.cut()
            await say(client, chat, user, "m1")  # its invalidation cannot reach Redis
            assert texts(await page(client, chat, 10)) == ["m0", "m1"]  # misses go to PostgreSQL
            other = await new_chat(client)
            await say(client, other, await join(client, other), "elsewhere")
            assert texts(await page(client, other, 10)) == ["elsewhere"]
            proxy.restore()

            # the tail cached before the outage is still in Redis; the retried invalidation drops it
            # well before its 600 s lifetime
            async def fresh() -> bool:
                return texts(await page(client, chat, 10)) == ["m0", "m1"]
            await poll(fresh, timeout=5)
            await say(client, chat, user, "m2")
            assert texts(await page(client, chat, 10)) == ["m0", "m1", "m2"]
            assert texts(await page(client, chat, 10)) == ["m0", "m1", "m2"]
    finally:
        proxy.close()
