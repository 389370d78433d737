"""Paging: complete, ordered, repeat-free under concurrent posters; keyset reads on the (chat_id, seq) index."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import psycopg

from chats_support import join, lock_waiters, new_chat, read_all, read_page, say
from messenger_chats import cursor
from messenger_chats.store import PAGE, POST_MESSAGES
from support import AppServer, Client, conninfo, poll


async def test_23_messages_by_5_then_poll_the_empty_last_page(chats: AppServer) -> None:
    client = chats.client
    chat = await new_chat(client)
    user = await join(client, chat)
    for number in range(1, 24):
        await say(client, chat, user, f"message {number}")
    seen: list[str] = []
    sizes = []
    iterator = None
    while True:
        messages, iterator = await read_page(client, chat, 5, iterator)
        if not messages:
            break
        sizes.append(len(messages))
        seen.extend(m["text"] for m in messages)
    assert sizes == [5, 5, 5, 5, 3]
    assert seen == [f"message {n}" for n in range(1, 24)]
    # polling the empty last page with its own iterator returns what is posted afterwards
    empty, same = await read_page(client, chat, 5, iterator)
    assert empty == [] and same == iterator
    new_id = await say(client, chat, user, "message 24")
    messages, after = await read_page(client, chat, 5, iterator)
    assert [(m["message_id"], m["text"]) for m in messages] == [(new_id, "message 24")]
    assert after != iterator
    assert (await read_page(client, chat, 5, after))[0] == []


async def test_four_posters_one_poller_see_every_message_once_in_final_order(chats: AppServer) -> None:
    chat = await new_chat(chats.client)
    posters = 4
    per_poster = 30
    users = [await join(chats.client, chat, f"poster {n}") for n in range(posters)]
    done = asyncio.Event()

    async def post_all(number: int) -> list[str]:
        client = Client(chats.url)  # its own connections: the posts really run in parallel
        return [await say(client, chat, users[number], f"{number}:{i}") for i in range(per_poster)]

    async def poll_until_done() -> list[dict[str, Any]]:
        client = Client(chats.url)
        got: list[dict[str, Any]] = []
        iterator = None
        while True:
            finished = done.is_set()  # read before the page: an empty page after this means the end
            messages, iterator = await read_page(client, chat, 7, iterator)
            got.extend(messages)
            if finished and not messages:
                return got
            if not messages:
                await asyncio.sleep(0.005)

    poller = asyncio.create_task(poll_until_done())
    posted = await asyncio.gather(*(post_all(n) for n in range(posters)))
    done.set()
    polled = await asyncio.wait_for(poller, 30)
    final = await read_all(chats.client, chat, limit=1000)
    final_ids = [m["message_id"] for m in final]
    assert len(final_ids) == posters * per_poster == len(set(final_ids))
    assert [m["message_id"] for m in polled] == final_ids  # every one, exactly once, same order
    switches = sum(1 for a, b in zip(final, final[1:]) if a["user_id"] != b["user_id"])
    assert switches >= posters, "the posts did not interleave: nothing concurrent was tested"
    for number, ids in enumerate(posted):  # each poster's messages keep their posting order
        assert [m for m in final_ids if m in set(ids)] == ids
        expected = [f"{number}:{i}" for i in range(per_poster)]
        assert [m["text"] for m in final if m["user_id"] == users[number]] == expected


async def test_a_waiting_poster_never_gets_a_position_before_an_uncommitted_one(
        chats: AppServer, database: str) -> None:
    """The failure mode of global sequences: a smaller position committing later.

    A transaction of our own takes position n+1 and stays open; an HTTP post meanwhile waits on the
    chat row's lock (seen in pg_stat_activity), so it cannot take a position before ours.  A poller
    sees neither until our commit, then both, in commit order.
    """
    client = chats.client
    chat = await new_chat(client)
    user = await join(client, chat)
    await say(client, chat, user, "first")
    _, iterator = await read_page(client, chat, 10)
    async with await psycopg.AsyncConnection.connect(conninfo(database)) as conn:
        ours = uuid.uuid4()
        await conn.execute(POST_MESSAGES, {"chat_ids": [uuid.UUID(chat)], "ids": [ours],
                                           "member_ids": [uuid.UUID(user)], "texts": ["held"]})
        theirs = asyncio.create_task(client.post(f"/v1/chats/{chat}/messages?user_id={user}", {"message": "late"}))

        async def waiting() -> bool:
            return await lock_waiters(database) == 1  # the server's insert, on the chat row's lock
        await poll(waiting, timeout=1.5)
        assert (await read_page(client, chat, 10, iterator))[0] == []
        await conn.commit()
    resp = await theirs
    assert resp.status == 201
    messages, _ = await read_page(client, chat, 10, iterator)
    expected = [(ours.hex, "held"), (resp.json["message_id"], "late")]
    assert [(m["message_id"], m["text"]) for m in messages] == expected


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes.extend(_plan_nodes(child))
    return nodes


async def test_page_query_is_a_keyset_read_on_the_chat_seq_index(chats: AppServer, database: str) -> None:
    chat_ids = [uuid.uuid4() for _ in range(4)]
    per_chat = 25_000
    async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as conn:
        for chat_id in chat_ids:
            member = uuid.uuid4()
            await conn.execute("INSERT INTO chats (id, name, last_seq) VALUES (%s, 'big', %s)", (chat_id, per_chat))
            await conn.execute("INSERT INTO chat_members (id, chat_id, user_name) VALUES (%s, %s, 'bulk')",
                               (member, chat_id))
            await conn.execute("INSERT INTO messages (id, chat_id, seq, member_id, text) "
                               "SELECT gen_random_uuid(), %s, g, %s, 'text ' || g "
                               "FROM generate_series(1, %s) AS g", (chat_id, member, per_chat))
        await conn.execute("ANALYZE messages")
        await conn.execute("ANALYZE chats")
        plans = {}
        for after in (0, per_chat // 2, per_chat - 50):
            cur = await conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + PAGE,
                                     {"chat_id": chat_ids[1], "after": after, "limit": 50})
            raw = (await cur.fetchone())[0]
            plans[after] = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
    for after, plan in plans.items():
        nodes = _plan_nodes(plan)
        types = {node.get("Relation Name"): node["Node Type"] for node in nodes if node.get("Relation Name")}
        # messages are reached only through the index (an ordered index scan, or near the end of the
        # chat, where few rows match, a bitmap of those rows), never by a sequential scan
        assert types["messages"] in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan"), (after, plan)
        on_index = [node for node in nodes if node.get("Index Name") == "messages_chat_seq_key"]
        assert on_index, (after, plan)
        for node in on_index:  # the index yields the page's rows and no more: no OFFSET-like skipping
            assert node["Actual Rows"] == 50, (after, node)
        assert "Limit" in [node["Node Type"] for node in nodes]
        # the cost does not grow with the depth: a handful of index and heap pages either way
        assert plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0) < 30, (after, plan)
    # and the HTTP page at that depth is the right one
    messages, _ = await read_page(chats.client, chat_ids[1].hex, 5, cursor.encode(chat_ids[1], 20_000))
    assert [m["text"] for m in messages] == [f"text {n}" for n in range(20_001, 20_006)]
