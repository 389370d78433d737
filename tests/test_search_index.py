"""The search query uses the GiST index, keeps the newest SEARCH_MAX_RESULTS, and follows SEARCH_TS_CONFIG."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from typing import Any

import psycopg
import pytest

from chats_support import join, new_chat, say
from messenger_search.query import MATCH_SQL
from search_support import read_results, search_server, search_texts, start_search, wait_status
from support import BIN, conninfo, poll, sql

ROWS = 20000
DEADLINE_ROWS = 100000


async def bulk_messages(database: str, chat_id: str, member_id: str, rows: int = ROWS) -> None:
    """``rows`` filler messages (one a second, long ago) plus the chat's position counter."""
    await sql(database, """
        INSERT INTO messages (id, chat_id, seq, member_id, text, created_at)
        SELECT gen_random_uuid(), %s, 1000 + g, %s,
               'filler number ' || g || ' talks about the weather', now() - interval '1 day' + g * interval '1 s'
        FROM generate_series(1, %s) AS g""", (chat_id, member_id, rows))
    await sql(database, "UPDATE chats SET last_seq = (SELECT max(seq) FROM messages WHERE chat_id = %s)"
                        " WHERE id = %s", (chat_id, chat_id))
    await sql(database, "ANALYZE messages")


async def explain(database: str, chats: list[str], query: str, seqscan: bool = True) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the task's matching query, as JSON (``seqscan=False``: can it use an index at all?)."""
    async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as conn:
        if not seqscan:
            await conn.execute("SET enable_seqscan = off")
        cur = await conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + MATCH_SQL, {"chats": chats, "query": query})
        plan = (await cur.fetchone())[0]
    return plan[0] if isinstance(plan, list) else json.loads(plan)[0]


def index_names(node: dict[str, Any]) -> set[str]:
    """Every index a plan node (or its children) reads."""
    names = {node["Index Name"]} if "Index Name" in node else set()
    for child in node.get("Plans", []):
        names |= index_names(child)
    return names


async def test_explain_uses_the_gist_index_and_max_results_keeps_the_newest(
        env: dict[str, str], database: str) -> None:
    async with search_server(env, SEARCH_MAX_RESULTS=5) as srv:
        client = srv.client
        chat = await new_chat(client)
        user = await join(client, chat)
        await bulk_messages(database, chat, user)
        planted = [await say(client, chat, user, f"rare aardvark sighting {i}") for i in range(3)]

        plan = await explain(database, [chat], "aardvark")
        assert "messages_text_search_idx" in index_names(plan["Plan"]), plan
        assert plan["Plan"]["Actual Rows"] == 3
        plan = await explain(database, [chat], '"rare aardvark" -weather')
        assert "messages_text_search_idx" in index_names(plan["Plan"]), plan

        task_id = await start_search(client, "aardvark", user)
        await wait_status(client, task_id, user_id=user)
        found, _ = await read_results(client, task_id, user_id=user)
        assert [item["message_id"] for item in found] == planted[::-1]

        # a word in every filler: only the SEARCH_MAX_RESULTS newest are kept, newest first
        task_id = await start_search(client, "weather", user)
        await wait_status(client, task_id, user_id=user)
        found, iterator = await read_results(client, task_id, user_id=user)
        assert [item["text"] for item in found] == [
            f"filler number {n} talks about the weather" for n in range(ROWS, ROWS - 5, -1)]
        assert iterator == "5"


async def test_the_deadline_ends_the_task_in_time_with_what_it_had_found(
        env: dict[str, str], database: str, caplog: pytest.LogCaptureFixture) -> None:
    # Without the index every row costs a to_tsvector (~20 us): DEADLINE_ROWS take seconds to scan,
    # while inserting them is cheap.  The plan does not matter to the deadline.
    caplog.set_level(logging.INFO, logger="messenger.search.task")
    async with search_server(env, SEARCH_MAX_RESULTS=5, SEARCH_TIMEOUT=0.1) as srv:
        chat = await new_chat(srv.client)
        user = await join(srv.client, chat)
        await sql(database, "DROP INDEX messages_text_search_idx")
        await bulk_messages(database, chat, user, DEADLINE_ROWS)
        started = time.monotonic()
        task_id = await start_search(srv.client, "weather", user)
        await wait_status(srv.client, task_id, user_id=user)
        assert time.monotonic() - started < 3
        found, _ = await read_results(srv.client, task_id)
        # a sequential scan goes oldest first: it kept the newest of the rows it had reached
        numbers = [int(item["text"].split()[2]) for item in found]
        assert len(numbers) == 5 and numbers == sorted(numbers, reverse=True), numbers
        assert numbers[0] < DEADLINE_ROWS // 2, numbers
        assert f"search task {task_id} stopped at the 0.1s deadline with 5 results" in caplog.text


async def test_search_ts_config_restems_under_the_same_name_and_index(env: dict[str, str], database: str) -> None:
    async with search_server(env) as srv:
        client = srv.client
        chat = await new_chat(client)
        user = await join(client, chat)
        await say(client, chat, user, "гуляли с кошками")
        assert await search_texts(client, "кошка", user) == ["гуляли с кошками"]

    async def restemmed(expected: str) -> bool:
        rows = await sql(database, "SELECT to_tsvector('messenger_search', 'кошками')::text")
        return rows[0][0] == expected

    async with search_server(env, SEARCH_TS_CONFIG="pg_catalog.simple") as srv:
        await poll(lambda: restemmed("'кошками':1"), timeout=10)
        assert await search_texts(srv.client, "кошка", user) == []
        assert await search_texts(srv.client, "кошками", user) == ["гуляли с кошками"]
        plan = await explain(database, [chat], "кошками", seqscan=False)  # a one-row table: force the choice
        assert "messages_text_search_idx" in index_names(plan["Plan"]), plan
        assert plan["Plan"]["Actual Rows"] == 1

    async with search_server(env, SEARCH_TS_CONFIG="no_such_config") as srv:  # logged, stemming kept
        assert await search_texts(srv.client, "кошками", user) == ["гуляли с кошками"]

    async with search_server(env) as srv:  # back to the default: Russian stemming again
        await poll(lambda: restemmed("'кошк':1"), timeout=10)
        assert await search_texts(srv.client, "кошка", user) == ["гуляли с кошками"]


def test_the_migration_rolls_back_and_applies_again(env: dict[str, str], database: str) -> None:
    cli_env = {**os.environ, **env, "MESSENGER_APPS": "messenger_chats,messenger_search"}
    cli_env.pop("MESSENGER_DISABLE_PLUGIN_AUTOLOAD", None)

    def migrate(*args: str) -> str:
        done = subprocess.run([str(BIN / "messenger-api"), "migrate", *args], env=cli_env, capture_output=True,
                              text=True, timeout=60, check=True)
        return done.stdout.strip()

    def objects() -> list[tuple[Any, ...]]:
        with psycopg.connect(conninfo(database)) as conn:
            return conn.execute("SELECT (SELECT count(*) FROM pg_indexes WHERE indexname = 'messages_text_search_idx'),"
                                " (SELECT count(*) FROM pg_ts_config WHERE cfgname = 'messenger_search')").fetchall()

    assert migrate() == ("messenger_chats:0001_chats\nmessenger_chats:0002_conversations\n"
                         "messenger_chats:0003_changes\nmessenger_search:0001_text_search")
    assert objects() == [(1, 1)]
    assert migrate("--down", "messenger_search") == "messenger_search:0001_text_search"
    assert objects() == [(0, 0)]
    assert migrate("--down", "messenger_search") == "nothing to roll back"
    assert migrate() == "messenger_search:0001_text_search"
    assert migrate() == "nothing to apply"
    assert objects() == [(1, 1)]
