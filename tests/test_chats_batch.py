"""Group commit of posts: concurrent posts share one insert, yet each keeps its own answer and position."""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from pathlib import Path

import psycopg
import pytest

from chats_support import chats_server, join, lock_waiters, new_chat, read_all
from messenger_chats.state import store_of
from messenger_chats.store import POST_MESSAGES, ChatStore
from support import Client, conninfo, poll, start_api


async def _positions(database: str) -> dict[str, list[tuple[int, str]]]:
    """Each chat's (seq, text) in seq order, and a check that created_at grows with seq."""
    async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM (SELECT created_at, lag(created_at) OVER (PARTITION BY chat_id ORDER BY seq) "
            "AS before FROM messages) AS t WHERE before >= created_at")
        assert (await cur.fetchone())[0] == 0, "created_at does not follow seq"
        cur = await conn.execute("SELECT c.id, c.last_seq, m.seq, m.text FROM chats AS c "
                                 "JOIN messages AS m ON m.chat_id = c.id ORDER BY c.id, m.seq")
        out: dict[str, list[tuple[int, str]]] = {}
        for chat_id, last_seq, seq, text in await cur.fetchall():
            out.setdefault(chat_id.hex, []).append((seq, text))
            assert seq <= last_seq
    for rows in out.values():  # no hole, no repeat
        assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1))
    return out


async def test_concurrent_posts_go_in_one_insert_each_at_its_own_position(
        env: dict[str, str], database: str) -> None:
    async with chats_server(env) as srv:
        chats = [await new_chat(srv.client, f"c{n}") for n in range(3)]
        users = [await join(srv.client, chat) for chat in chats]
        store: ChatStore = store_of(srv.runtime)
        flushes = store.posts.flushes
        posts = [(n % 3, f"m{n}") for n in range(30)]  # interleaved over the three chats
        ids = await asyncio.gather(*(store.post_message(uuid.UUID(chats[c]), uuid.UUID(users[c]), text)
                                     for c, text in posts))
        assert store.posts.flushes == flushes + 1, "the 30 posts did not share one insert"
        assert len(set(ids)) == 30 and all(isinstance(i, uuid.UUID) for i in ids)
        positions = await _positions(database)
        for c, chat in enumerate(chats):  # arrival order inside each chat
            expected = [text for chat_no, text in posts if chat_no == c]
            assert [text for _, text in positions[chat]] == expected
            page = await read_all(srv.client, chat)
            assert [m["text"] for m in page] == expected
            assert [m["message_id"] for m in page] == [i.hex for i, (chat_no, _) in zip(ids, posts) if chat_no == c]


async def test_a_post_to_an_unknown_chat_does_not_disturb_its_batch(env: dict[str, str], database: str) -> None:
    async with chats_server(env) as srv:
        chat = await new_chat(srv.client)
        user = uuid.UUID(await join(srv.client, chat))
        store: ChatStore = store_of(srv.runtime)
        results = await asyncio.gather(
            store.post_message(uuid.UUID(chat), user, "a"),
            store.post_message(uuid.uuid4(), user, "lost"),
            store.post_message(uuid.UUID(chat), user, "b"))
        assert isinstance(results[0], uuid.UUID) and results[1] is None and isinstance(results[2], uuid.UUID)
        assert await _positions(database) == {chat: [(1, "a"), (2, "b")]}


async def test_a_row_the_database_refuses_fails_alone_and_leaves_no_hole(
        env: dict[str, str], database: str) -> None:
    async with chats_server(env) as srv:  # migrated: the table exists
        async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as conn:
            await conn.execute("ALTER TABLE messages ADD CONSTRAINT test_refuse CHECK (text <> 'refused')")
        chat = await new_chat(srv.client)
        user = uuid.UUID(await join(srv.client, chat))
        store: ChatStore = store_of(srv.runtime)
        flushes = store.posts.flushes
        texts = ["one", "two", "refused", "three", "four"]
        results = await asyncio.gather(*(store.post_message(uuid.UUID(chat), user, text) for text in texts),
                                       return_exceptions=True)
        assert store.posts.flushes == flushes + 1  # they were one batch, then went one by one
        assert isinstance(results[2], psycopg.errors.CheckViolation)
        assert all(isinstance(results[n], uuid.UUID) for n in (0, 1, 3, 4))
        assert await _positions(database) == {chat: [(1, "one"), (2, "two"), (3, "three"), (4, "four")]}
        # over HTTP the refused one is a 500 that tells nothing of the database; the others were 201
        resp = await srv.client.post(f"/v1/chats/{chat}/messages?user_id={user.hex}", {"message": "refused"})
        assert resp.status == 500 and b"test_refuse" not in resp.body
        resp = await srv.client.post(f"/v1/chats/{chat}/messages?user_id={user.hex}", {"message": "five"})
        assert resp.status == 201
        assert [m["text"] for m in await read_all(srv.client, chat)] == ["one", "two", "three", "four", "five"]


@pytest.mark.parametrize("batch", ["64", "1"])
async def test_two_workers_posting_into_many_chats_never_deadlock_or_lose_a_position(
        env: dict[str, str], database: str, tmp_path: Path, batch: str) -> None:
    proc, client = await start_api({**env, "WORKERS": "2", "CACHE_TYPE": "redis", "CHATS_POST_BATCH": batch,
                                    "MESSENGER_APPS": "messenger_chats", "LOG_LEVEL": "DEBUG"},
                                   tmp_path / "api.log")
    try:
        chats = [await new_chat(client, f"c{n}") for n in range(8)]
        users = [await join(client, chat) for chat in chats]
        order = [n % len(chats) for n in range(320)]
        random.Random(7).shuffle(order)  # each connection walks the chats in another order
        lanes = [order[lane::32] for lane in range(32)]

        async def post_lane(lane: int) -> list[tuple[int, str, int]]:
            own = Client(client.base_url)
            out = []
            for step, c in enumerate(lanes[lane]):
                text = f"{lane}:{step}"
                resp = await own.post(f"/v1/chats/{chats[c]}/messages?user_id={users[c]}", {"message": text})
                out.append((c, text, resp.status))
            return out

        answers = [a for lane in await asyncio.gather(*(post_lane(n) for n in range(32))) for a in lane]
        assert [status for _, _, status in answers] == [201] * 320, proc.log[-3000:]
        positions = await _positions(database)
        for c, chat in enumerate(chats):
            stored = [text for _, text in positions[chat]]
            assert sorted(stored) == sorted(text for chat_no, text, _ in answers if chat_no == c)
            for lane in range(32):  # a connection's posts keep their order inside each chat
                mine = [text for text in stored if text.startswith(f"{lane}:")]
                assert mine == sorted(mine, key=lambda t: int(t.split(":")[1]))
            assert [m["text"] for m in await read_all(client, chat)] == stored
        sizes = [(int(n), int(m)) for n, m in re.findall(r"(\d+) post\(s\) into (\d+) chat\(s\)", proc.log)]
        assert sum(n for n, _ in sizes) == 320
        if batch == "1":
            assert all(n == 1 for n, _ in sizes)
        else:
            assert any(m > 1 for _, m in sizes), "no insert carried posts of several chats"
        assert "deadlock" not in proc.log
    finally:
        assert proc.stop() == 0


async def test_an_insert_waiting_for_one_chat_holds_no_other_chat(env: dict[str, str], database: str) -> None:
    """The lock order that makes batches deadlock-free: chat rows are locked in id order.

    Our transaction holds chat A (the smaller id).  A batch for B and A then waits for A, and must
    hold nothing meanwhile: our own post into B goes through at once, no deadlock.
    """
    async with chats_server(env) as srv:
        first, second = sorted([await new_chat(srv.client, "a"), await new_chat(srv.client, "b")])
        members = {chat: uuid.UUID(await join(srv.client, chat)) for chat in (first, second)}

        def batch(*posts: tuple[str, str]) -> dict[str, list[object]]:
            return {"ids": [uuid.uuid4() for _ in posts], "chat_ids": [uuid.UUID(chat) for chat, _ in posts],
                    "member_ids": [members[chat] for chat, _ in posts], "texts": [text for _, text in posts]}

        async with await psycopg.AsyncConnection.connect(conninfo(database)) as ours, \
                await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as theirs:
            await ours.execute("SET statement_timeout = '3s'")
            await ours.execute(POST_MESSAGES, batch((first, "ours in a")))
            waiting = asyncio.create_task(theirs.execute(POST_MESSAGES, batch((second, "b1"), (first, "a1"))))

            async def blocked() -> bool:
                return await lock_waiters(database) == 1
            await poll(blocked, timeout=3)
            await ours.execute(POST_MESSAGES, batch((second, "ours in b")))  # B is free: no wait
            await ours.commit()
            await asyncio.wait_for(waiting, 5)
        expected = {first: [(1, "ours in a"), (2, "a1")], second: [(1, "ours in b"), (2, "b1")]}
        assert await _positions(database) == expected
