"""Helpers of the chats tests: a chats-only server, short-hands for the four endpoints, table counts."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import psycopg

from support import AppServer, Client, Response, conninfo, serve_app

HEX32 = re.compile(r"^[0-9a-f]{32}$")
CHATS_ONLY = ("messenger_chats",)


@asynccontextmanager
async def chats_server(env: Mapping[str, str], **overrides: Any) -> AsyncIterator[AppServer]:
    """The app with only the chats plugin (auth off, as the course's black-box tests run it)."""
    async with serve_app({**env, **{k: str(v) for k, v in overrides.items()}}, plugins=CHATS_ONLY) as srv:
        yield srv


async def new_chat(client: Client, name: str = "chat") -> str:
    """Create a chat; its id."""
    resp = await client.post("/v1/chats", {"chat_name": name})
    assert resp.status == 201, resp
    assert set(resp.json) == {"chat_id"} and HEX32.match(resp.json["chat_id"]), resp.json
    return resp.json["chat_id"]


async def join(client: Client, chat_id: str, user_name: str = "user") -> str:
    """Add a member; its id."""
    resp = await client.post(f"/v1/chats/{chat_id}/users", {"user_name": user_name})
    assert resp.status == 201, resp
    assert set(resp.json) == {"user_id"} and HEX32.match(resp.json["user_id"]), resp.json
    return resp.json["user_id"]


async def say(client: Client, chat_id: str, user_id: str, text: str) -> str:
    """Post a message; its id."""
    resp = await client.post(f"/v1/chats/{chat_id}/messages?user_id={user_id}", {"message": text})
    assert resp.status == 201, resp
    assert set(resp.json) == {"message_id"} and HEX32.match(resp.json["message_id"]), resp.json
    return resp.json["message_id"]


async def longpolls_held(client: Client, value: float) -> bool:
    """Whether ``/metrics`` shows ``value`` long-polls held (the gauge is sampled about once a second)."""
    text = (await client.get("/metrics")).body.decode()
    return f"messenger_longpolls_held {value}" in text


async def page(client: Client, chat_id: str, limit: int, start: str | None = None) -> Response:
    """GET one page (asserting nothing)."""
    query = f"limit={limit}" + (f"&from={start}" if start is not None else "")
    return await client.get(f"/v1/chats/{chat_id}/messages?{query}")


async def read_page(client: Client, chat_id: str, limit: int,
                    start: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """One page that must be 200: its messages and next iterator."""
    resp = await page(client, chat_id, limit, start)
    assert resp.status == 200, resp
    body = resp.json
    assert set(body) == {"messages", "next"} and set(body["next"]) == {"iterator"}, body
    for message in body["messages"]:
        assert set(message) == {"message_id", "user_id", "text", "created_at", "edited_at"}, message
    return body["messages"], body["next"]["iterator"]


async def read_all(client: Client, chat_id: str, limit: int = 1000) -> list[dict[str, Any]]:
    """Every message of the chat, following the iterators until an empty page."""
    out: list[dict[str, Any]] = []
    start = None
    while True:
        messages, start = await read_page(client, chat_id, limit, start)
        if not messages:
            return out
        out.extend(messages)


async def table_counts(database: str) -> dict[str, int]:
    """Rows in each table of the plugin (to show that refused input left the data intact)."""
    async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as conn:
        counts = {}
        for table in ("chats", "chat_members", "messages"):
            cur = await conn.execute(f"SELECT count(*) FROM {table}")  # fixed table names
            counts[table] = (await cur.fetchone())[0]
        return counts


async def lock_waiters(database: str) -> int:
    """Statements of this database waiting for a lock now (from pg_stat_activity)."""
    async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as probe:
        cur = await probe.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                  "AND wait_event_type = 'Lock'", (database,))
        return (await cur.fetchone())[0]


async def table_names(database: str) -> set[str]:
    """The plugin's tables that exist in the database."""
    async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as conn:
        cur = await conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                 "AND tablename IN ('chats', 'chat_members', 'messages')")
        return {row[0] for row in await cur.fetchall()}
