"""The chat list of an account in many chats: does ``GET /v1/chats`` cost grow with the chats' messages?

Creates a scratch database, registers accounts through a real in-process server (auth and chats
plugins), gives each account N chats straight through SQL (a member, its ``chat_accounts`` row with a
read marker half way, M messages per chat, every tenth deleted), then times

* the plugin's list query (``messenger_chats.conversations.LIST_CHATS``) for accounts in 10, 100 and
  1,000 chats, with 10 and with 300 messages per chat (the cost should follow the chats, not the
  messages), next to a naive list that counts each chat's unread messages;
* ``GET /v1/chats`` over HTTP for the account in 1,000 chats, with the CPU time of this process (server and
  client: Python's share) and PostgreSQL's execution time of the list query (EXPLAIN ANALYZE, TIMING OFF)
  per request, which a busy machine disturbs far less than wall-clock times;
* ``POST /v1/chats/{id}/read`` (a marker moved forward over a few deletions);
* with ``--profile``, where the time of ``GET /v1/chats`` for the account in the most chats goes (cProfile
  of the server and client in this one event loop: waiting on PostgreSQL shows as ``epoll``).

Usage: ``.venv/bin/python -m bench.conversations [--chats 10,100,1000] [--messages 10,300] [--repeat 50]
[--profile]``.
Prints Markdown tables (milliseconds, median and 95th percentile); ``bench/README.md`` has a recorded run.
Needs the local PostgreSQL (``--host``, ``--user``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import io
import pstats
import statistics
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from messenger_chats import cursor
from messenger_chats.conversations import LIST_CHATS
from tornado.httpclient import AsyncHTTPClient

from messenger_core.testing import serve_app

from .chats_paging import fetch_all, timed
from .stack import scratch_database

#: What a list would cost if it counted the unread messages of every chat (for contrast only).
COUNTING_LIST = """
SELECT a.chat_id,
       (SELECT count(*) FROM messages AS m
        WHERE m.chat_id = a.chat_id AND m.seq > a.read_seq AND m.deleted_at IS NULL) AS unread,
       (SELECT max(created_at) FROM messages AS m WHERE m.chat_id = a.chat_id AND m.deleted_at IS NULL) AS newest
FROM chat_accounts AS a WHERE a.account_id = %(account)s ORDER BY newest DESC NULLS LAST
"""


async def session(client: AsyncHTTPClient, base: str, name: str) -> str:
    """Register and log in ``name``; the Authorization header value."""
    body = json.dumps({"user_name": name, "password": "bench-password"})
    await client.fetch(f"{base}/v1/auth/register", method="POST", body=body)
    resp = await client.fetch(f"{base}/v1/auth/login", method="POST", body=body)
    return "session_id " + json.loads(resp.body)["session_id"]


async def fill(conn: psycopg.AsyncConnection, account: uuid.UUID, chats: int, messages: int) -> list[uuid.UUID]:
    """``chats`` chats of ``messages`` messages for ``account`` (marker half way, every tenth deleted)."""
    ids = [uuid.uuid4() for _ in range(chats)]
    deleted = messages // 10
    await conn.execute(
        "INSERT INTO chats (id, name, owner_id, last_seq, deleted_total) "
        "SELECT c, 'bench', %s, %s, %s FROM unnest(%s::uuid[]) AS c", (account, messages, deleted, ids))
    await conn.execute(
        "INSERT INTO chat_members (id, chat_id, user_name, account_id) "
        "SELECT gen_random_uuid(), c, 'bench', %s FROM unnest(%s::uuid[]) AS c", (account, ids))
    await conn.execute(
        "INSERT INTO chat_accounts (account_id, chat_id, members, read_seq, deleted_upto) "
        "SELECT %s, c, 1, %s, %s FROM unnest(%s::uuid[]) AS c",
        (account, messages // 2, (messages // 2) // 10, ids))
    await conn.execute(
        "INSERT INTO messages (id, chat_id, seq, member_id, text, created_at, deleted_at) "
        "SELECT gen_random_uuid(), m.chat_id, g, m.id, 'message ' || g, now() + g * interval '1 ms', "
        "       CASE WHEN g %% 10 = 0 THEN now() END "
        "FROM chat_members AS m CROSS JOIN generate_series(1, %s) AS g WHERE m.chat_id = ANY(%s::uuid[])",
        (messages, ids))
    return ids


async def account_id(conn: psycopg.AsyncConnection, name: str) -> uuid.UUID:
    """The id of a registered account."""
    cur = await conn.execute("SELECT id FROM accounts WHERE user_name = %s", (name,))
    return (await cur.fetchone())[0]


async def get_ok(client: AsyncHTTPClient, url: str, headers: dict[str, str]) -> None:
    """One GET that must answer 200."""
    resp = await client.fetch(url, headers=headers)
    assert resp.code == 200


@dataclass
class Accounts:
    """The accounts of one run, by (chats, messages per chat): session headers, ids, one chat each."""

    headers: dict[tuple[int, int], dict[str, str]] = field(default_factory=dict)
    ids: dict[tuple[int, int], uuid.UUID] = field(default_factory=dict)
    first_chat: dict[tuple[int, int], uuid.UUID] = field(default_factory=dict)


async def fill_all(client: AsyncHTTPClient, base: str, conn: psycopg.AsyncConnection, chat_counts: list[int],
                   message_counts: list[int]) -> Accounts:
    """One account per (chats, messages per chat), registered over HTTP, its chats filled by SQL."""
    accounts = Accounts()
    for messages in message_counts:
        for chats in chat_counts:
            user = f"bench-{chats}-{messages}"
            accounts.headers[chats, messages] = {"Authorization": await session(client, base, user)}
            accounts.ids[chats, messages] = await account_id(conn, user)
            accounts.first_chat[chats, messages] = (await fill(conn, accounts.ids[chats, messages], chats,
                                                               messages))[0]
    await conn.execute("VACUUM ANALYZE")
    return accounts


async def query_rows(conn: psycopg.AsyncConnection, accounts: Accounts, repeat: int) -> list[str]:
    """Table rows: the list query next to a counting list, for every account."""
    rows = []
    for (chats, messages), account in accounts.ids.items():
        params: dict[str, Any] = {"account": account}
        med, p95 = await timed(functools.partial(fetch_all, conn, LIST_CHATS, params), repeat)
        c_med, c_p95 = await timed(functools.partial(fetch_all, conn, COUNTING_LIST, params), max(5, repeat // 5))
        rows.append(f"| {chats:,} | {messages:,} | {med:.2f} / {p95:.2f} | {c_med:.2f} / {c_p95:.2f} |")
    return rows


async def server_ms(conn: psycopg.AsyncConnection, account: uuid.UUID, repeat: int) -> float:
    """PostgreSQL's median execution time of the list query, milliseconds (no per-node timing)."""
    samples = []
    for _ in range(repeat):
        cur = await conn.execute("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + LIST_CHATS, {"account": account})
        samples.append((await cur.fetchone())[0][0]["Execution Time"])
    return statistics.median(samples)


async def http_rows(client: AsyncHTTPClient, base: str, conn: psycopg.AsyncConnection, accounts: Accounts,
                    repeat: int) -> list[str]:
    """Table rows: GET /v1/chats for the accounts in the most chats, then POST .../read."""
    rows = []
    most = max(chats for chats, _ in accounts.ids)
    for (chats, messages), headers in accounts.headers.items():
        if chats == most:
            cpu = time.process_time()
            med, p95 = await timed(functools.partial(get_ok, client, f"{base}/v1/chats", headers), repeat)
            cpu_ms = (time.process_time() - cpu) * 1000 / (repeat + 5)  # timed() warms up with 5 more
            sql_ms = await server_ms(conn, accounts.ids[chats, messages], repeat)
            rows.append(f"| GET /v1/chats, {chats:,} chats of {messages:,} messages | {med:.2f} / {p95:.2f} "
                        f"| {cpu_ms:.2f} | {sql_ms:.2f} |")
    messages = max(messages for _, messages in accounts.ids)
    chat, headers = accounts.first_chat[most, messages], accounts.headers[most, messages]
    seqs = iter(range(messages // 2 + 1, messages + 1))

    async def mark() -> None:
        body = json.dumps({"iterator": cursor.encode(chat, next(seqs, messages))})
        resp = await client.fetch(f"{base}/v1/chats/{chat.hex}/read", method="POST", body=body, headers=headers)
        assert resp.code == 204
    med, p95 = await timed(mark, max(5, min(repeat, messages // 2 - 10)))
    rows.append(f"| POST /v1/chats/{{id}}/read, one message further each time | {med:.2f} / {p95:.2f} | | |")
    return rows


async def profile_list(client: AsyncHTTPClient, base: str, accounts: Accounts, repeat: int) -> str:
    """The top functions (own time) over ``repeat`` GET /v1/chats of the account in the most chats."""
    most = max(accounts.ids, key=lambda key: key[0])
    headers = accounts.headers[most]
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeat):
        await get_ok(client, f"{base}/v1/chats", headers)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
    return f"\nprofile of {repeat} GET /v1/chats, {most[0]:,} chats of {most[1]:,} messages:\n{out.getvalue()}"


async def main(args: argparse.Namespace) -> None:
    """Create the scratch database, fill, measure, print, drop it."""
    with scratch_database(args.host, args.user, "bench_conversations") as name:
        env = {"POSTGRES_HOSTS": args.host, "POSTGRES_USER": args.user, "POSTGRES_DB": name, "LOG_LEVEL": "WARNING",
               "ACCESS_LOG": "0", "CACHE_PREFIX": f"{name}:", "AUTH_SCRYPT_N": "1024", "NGINX_THROTTLING": "1"}
        async with serve_app(env, plugins=("messenger_auth", "messenger_chats")) as srv:
            base = srv.url
            client = AsyncHTTPClient(force_instance=True)
            conninfo = f"host={args.host} user={args.user} dbname={name}"
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                started = time.perf_counter()
                accounts = await fill_all(client, base, conn, [int(part) for part in args.chats.split(",")],
                                          [int(part) for part in args.messages.split(",")])
                print(f"filled in {time.perf_counter() - started:.1f}s\n")
                print("| chats of the account | messages per chat | LIST_CHATS ms (median / p95) "
                      "| counting list ms (median / p95) |")
                print("|---:|---:|---:|---:|")
                print("\n".join(await query_rows(conn, accounts, args.repeat)))
                print("\n| HTTP (one in-process server, auth on) | ms (median / p95) | Python CPU ms "
                      "| PostgreSQL ms |")
                print("|---|---:|---:|---:|")
                print("\n".join(await http_rows(client, base, conn, accounts, args.repeat)))
            if args.profile:
                print(await profile_list(client, base, accounts, args.repeat))
            client.close()


def parse_args() -> argparse.Namespace:
    """Command line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--chats", default="10,100,1000", help="chats per account, comma list")
    parser.add_argument("--messages", default="10,300", help="messages per chat, comma list")
    parser.add_argument("--repeat", type=int, default=50, help="timed runs per measurement")
    parser.add_argument("--profile", action="store_true", help="also profile GET /v1/chats (cProfile)")
    parser.add_argument("--host", default="127.0.0.1", help="PostgreSQL host")
    parser.add_argument("--user", default="postgres", help="PostgreSQL role (trust auth)")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
