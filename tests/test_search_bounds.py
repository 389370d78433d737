"""Search's bounds: the bytes of one task's results (SEARCH_MAX_BYTES) and the tasks one account or client
may have outstanding (SEARCH_MAX_PENDING)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import redis.asyncio as aioredis

from auth_support import bearer, new_session
from chats_support import join, new_chat, say
from search_support import consumer, read_results, search_server, start_search, wait_status
from search_support import rabbit_env_fixture  # noqa: F401  pylint: disable=unused-import
from support import assert_error, conninfo

# 65,536 characters that JSON escapes six-fold (393 KB of JSON each), almost nothing in PostgreSQL
HEAVY = "marmot " + "\x01" * 65529
WITH_AUTH = ("messenger_auth", "messenger_chats", "messenger_search")


async def test_a_task_keeps_its_newest_results_up_to_search_max_bytes(env: dict[str, str]) -> None:
    async with search_server(env) as srv:
        client = srv.client
        chat = await new_chat(client)
        user = await join(client, chat)
        heavy = [await say(client, chat, user, HEAVY) for _ in range(6)]
        task_id = await start_search(client, "marmot", user)
        await wait_status(client, task_id, user_id=user)
        resp = await client.get(f"/v1/chats/search/{task_id}/messages?limit=1000&user_id={user}")
        assert resp.status == 200
        assert len(resp.body) <= 1024 * 1024, len(resp.body)
        found = resp.json["messages"]
        assert [item["message_id"] for item in found] == heavy[::-1][:2]  # the newest two fit in 1 MiB
        assert found[0]["text"] == HEAVY and resp.json["next"] == {"iterator": "2"}
        # the task kept no more than that: paging on finds nothing else
        assert await read_results(client, task_id, start="2", user_id=user) == ([], "2")


async def test_a_result_larger_than_the_bound_is_kept_alone(env: dict[str, str]) -> None:
    async with search_server(env, SEARCH_MAX_BYTES=4096) as srv:
        client = srv.client
        chat = await new_chat(client)
        user = await join(client, chat)
        small = [await say(client, chat, user, f"a small marmot {i}") for i in range(3)]
        big = await say(client, chat, user, "a big marmot " + "x" * 10_000)
        task_id = await start_search(client, "marmot", user)
        await wait_status(client, task_id, user_id=user)
        found, iterator = await read_results(client, task_id, user_id=user)
        assert [item["message_id"] for item in found] == [big] and iterator == "1"
        assert await read_results(client, task_id, start="1", user_id=user) == ([], "1")

        await say(client, chat, user, "the last small marmot")
        task_id = await start_search(client, "small marmot", user)
        await wait_status(client, task_id, user_id=user)
        resp = await client.get(f"/v1/chats/search/{task_id}/messages?limit=1000&user_id={user}")
        assert len(resp.body) <= 4096 and len(resp.json["messages"]) == 4
        assert [item["message_id"] for item in resp.json["messages"]][1:] == small[::-1]
