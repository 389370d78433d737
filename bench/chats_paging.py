"""Paging cost of the chats plugin: does a page get slower as the chat grows or the reader goes deeper?

Creates a scratch database, fills chats of several sizes straight through SQL, then times

* the plugin's keyset page query (``messenger_chats.store.PAGE``) at the start, the middle and the
  end of each chat, and the same page read with ``OFFSET`` for contrast;
* ``GET /v1/chats/{id}/messages`` on a real in-process server, with the page cache off and on;
* ``POST .../messages`` from concurrent clients into one chat (serialized by the chat row's lock) and
  into a chat each.

Usage: ``.venv/bin/python -m bench.chats_paging [--sizes 1000,100000,1000000] [--limit 100]``.
Numbers are printed as a Markdown table (milliseconds, median and 95th percentile); see
``bench/chats.md`` for a recorded run.  Needs the local PostgreSQL (``--host``, ``--user``).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from messenger_chats import cursor
from messenger_chats.store import MESSAGE_OVERHEAD, PAGE
from tornado.httpclient import AsyncHTTPClient

from messenger_core.testing import serve_app

from .stack import scratch_database

CHATS = ("messenger_chats",)  # the plugins of the bench's in-process server
OFFSET_PAGE = """
SELECT id, member_id, text, created_at, seq FROM messages WHERE chat_id = %(chat_id)s
ORDER BY seq OFFSET %(after)s LIMIT %(limit)s
"""


async def timed(run: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float]:
    """Median and 95th percentile of ``repeat`` runs, in milliseconds (after 5 warm-up runs)."""
    for _ in range(5):
        await run()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await run()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


async def fill(conninfo: str, sizes: list[int]) -> dict[int, uuid.UUID]:
    """One chat per size, ``size`` messages each (plus ANALYZE); chat ids by size."""
    chats = {}
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        for size in sizes:
            chat_id, member = uuid.uuid4(), uuid.uuid4()
            await conn.execute("INSERT INTO chats (id, name, last_seq) VALUES (%s, 'bench', %s)", (chat_id, size))
            await conn.execute("INSERT INTO chat_members (id, chat_id, user_name) VALUES (%s, %s, 'bench')",
                               (member, chat_id))
            await conn.execute("INSERT INTO messages (id, chat_id, seq, member_id, text) "
                               "SELECT gen_random_uuid(), %s, g, %s, repeat('lorem ipsum ', 8) || g "
                               "FROM generate_series(1, %s) AS g", (chat_id, member, size))
            chats[size] = chat_id
        await conn.execute("VACUUM ANALYZE messages")
        await conn.execute("ANALYZE chats")
    return chats


async def fetch_all(conn: psycopg.AsyncConnection, query: str, params: dict[str, Any]) -> None:
    """Run a query and fetch every row."""
    await (await conn.execute(query, params)).fetchall()


async def get_ok(client: AsyncHTTPClient, url: str) -> None:
    """One GET that must answer 200."""
    resp = await client.fetch(url)
    assert resp.code == 200


async def sql_rows(conninfo: str, chats: dict[int, uuid.UUID], limit: int, repeat: int) -> list[str]:
    """Table rows: keyset vs OFFSET at three depths of every chat."""
    rows = []
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        for size, chat_id in chats.items():
            for label, after in (("start", 0), ("middle", size // 2), ("end", max(0, size - limit))):
                params = {"chat_id": chat_id, "after": after, "limit": limit, "max_bytes": 1 << 20,
                          "overhead": MESSAGE_OVERHEAD}
                k_med, k_p95 = await timed(functools.partial(fetch_all, conn, PAGE, params), repeat)
                o_med, o_p95 = await timed(functools.partial(fetch_all, conn, OFFSET_PAGE, params),
                                           max(5, repeat // 10))
                rows.append(f"| {size:,} | {label} | {k_med:.2f} / {k_p95:.2f} | {o_med:.2f} / {o_p95:.2f} |")
    return rows


async def http_rows(env: dict[str, str], chats: dict[int, uuid.UUID], limit: int, repeat: int) -> list[str]:
    """Table rows: GET of a page at the middle of the largest chat, cache off and on."""
    rows = []
    size = max(chats)
    chat_id = chats[size]
    iterator = cursor.encode(chat_id, size // 2)
    for cache_pages in ("0", "1"):
        async with serve_app({**env, "CHATS_CACHE_PAGES": cache_pages}, plugins=CHATS) as srv:
            client = AsyncHTTPClient(force_instance=True)
            url = f"{srv.url}/v1/chats/{chat_id.hex}/messages?limit={limit}&from={iterator}"
            med, p95 = await timed(functools.partial(get_ok, client, url), repeat)
            rows.append(f"| GET page, cache {'on' if cache_pages == '1' else 'off'} | {med:.2f} / {p95:.2f} |")
            client.close()
    return rows


async def post_rows(env: dict[str, str], posters: int, per_poster: int) -> list[str]:
    """Table rows: messages per second from ``posters`` concurrent clients, into one chat or one chat each."""
    rows = []
    async with serve_app(env, plugins=CHATS) as srv:
        base = f"{srv.url}/v1/chats"

        async def post(client: AsyncHTTPClient, path: str, body: dict[str, str]) -> dict[str, str]:
            resp = await client.fetch(f"{base}{path}", method="POST", body=json.dumps(body))
            assert resp.code == 201
            return json.loads(resp.body)

        async def poster(chat_id: str) -> None:
            client = AsyncHTTPClient(force_instance=True)
            user = (await post(client, f"/{chat_id}/users", {"user_name": "bench"}))["user_id"]
            for number in range(per_poster):
                await post(client, f"/{chat_id}/messages?user_id={user}", {"message": f"message {number}"})
            client.close()

        setup = AsyncHTTPClient(force_instance=True)
        for label, count in (("one chat", 1), ("a chat each", posters)):
            chats = [(await post(setup, "", {"chat_name": "bench"}))["chat_id"] for _ in range(count)]
            started = time.perf_counter()
            await asyncio.gather(*(poster(chats[n % count]) for n in range(posters)))
            rate = posters * per_poster / (time.perf_counter() - started)
            rows.append(f"| {posters} posters, {label} | {rate:.0f} |")
        setup.close()
    return rows


async def main(args: argparse.Namespace) -> None:
    """Create the scratch database, measure, print, drop it."""
    with scratch_database(args.host, args.user, "bench_chats") as name:
        env = {"POSTGRES_HOSTS": args.host, "POSTGRES_USER": args.user, "POSTGRES_DB": name,
               "LOG_LEVEL": "WARNING", "ACCESS_LOG": "0", "CACHE_PREFIX": f"{name}:"}
        sizes = [int(part) for part in args.sizes.split(",")]
        async with serve_app(env, plugins=CHATS):  # applies the migrations
            pass
        conninfo = f"host={args.host} user={args.user} dbname={name}"
        started = time.perf_counter()
        chats = await fill(conninfo, sizes)
        print(f"filled {sum(sizes):,} messages in {time.perf_counter() - started:.1f}s; limit={args.limit}\n")
        print("| messages in chat | page at | keyset ms (median / p95) | OFFSET ms (median / p95) |")
        print("|---|---|---|---|")
        print("\n".join(await sql_rows(conninfo, chats, args.limit, args.repeat)))
        print(f"\n| HTTP, middle of the {max(sizes):,}-message chat | ms (median / p95) |")
        print("|---|---|")
        print("\n".join(await http_rows(env, chats, args.limit, args.repeat)))
        print("\n| POST /v1/chats/{id}/messages, concurrent clients | messages/s |")
        print("|---|---|")
        print("\n".join(await post_rows(env, args.posters, args.posts)))


def parse_args() -> argparse.Namespace:
    """Command line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="1000,100000,1000000", help="messages per chat, comma list")
    parser.add_argument("--limit", type=int, default=100, help="page size")
    parser.add_argument("--repeat", type=int, default=200, help="timed runs per measurement")
    parser.add_argument("--posters", type=int, default=8, help="concurrent posting clients")
    parser.add_argument("--posts", type=int, default=100, help="messages per posting client")
    parser.add_argument("--host", default="127.0.0.1", help="PostgreSQL host")
    parser.add_argument("--user", default="postgres", help="PostgreSQL role (trust auth)")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
