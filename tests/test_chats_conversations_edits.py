"""Conversations: editing and deleting one's own messages, seen by every page (cached or not, in any
process), by the unread counts, by paging with old iterators, by new searches and in the chat events."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from chats_support import chats_server, join, read_page, say, table_counts
from conversations_support import (MESSAGE_KEYS, WITH_SEARCH, account, auth_server, create, delete, found,
                                   edit, mark, member_of, my_chats, on, remove, texts_of, unread_of)
from support import AppServer, assert_error, conninfo, poll, start_api


@pytest.fixture
async def srv(env: dict[str, str]) -> AsyncIterator[AppServer]:
    async with auth_server(env, plugins=WITH_SEARCH) as server:
        yield server


async def test_authors_edit_and_delete_their_messages(srv: AppServer, database: str) -> None:
    alice = await account(srv.client, "alice")
    bob = await account(srv.client, "bob")
    mallory = await account(srv.client, "mallory")
    chat = await create(alice, "c")
    a, b = await member_of(alice, chat, "alice"), await member_of(bob, chat, "bob")
    ids = [await say(alice, chat, a, f"a{n}") for n in range(3)] + [await say(bob, chat, b, "b0")]
    assert (await unread_of(alice))[chat] == 1

    resp = await edit(alice, chat, ids[1], "a1, fixed")
    assert resp.status == 200, resp
    edited = resp.json
    assert set(edited) == MESSAGE_KEYS and edited["text"] == "a1, fixed" and edited["edited_at"] is not None
    messages, _ = await read_page(alice, chat, 10)
    assert messages[1] == edited  # exactly as a page shows it (same created_at)
    assert messages[0]["edited_at"] is None and edited["edited_at"] > edited["created_at"]

    other = await create(alice, "other")
    await member_of(alice, other, "alice")
    before = await table_counts(database)
    # only the author's account; everyone else as if the message did not exist
    assert_error(await edit(bob, chat, ids[0], "hijacked"), 404, "message-not-found")
    assert_error(await delete(bob, chat, ids[0]), 404, "message-not-found")
    assert_error(await edit(mallory, chat, ids[0], "hijacked"), 404, "chat-not-found")
    assert_error(await delete(mallory, chat, ids[0]), 404, "chat-not-found")
    assert_error(await edit(alice, chat, "not-a-uuid", "x"), 404, "message-not-found")
    assert_error(await edit(alice, chat, uuid.uuid4().hex, "x"), 404, "message-not-found")
    assert_error(await edit(alice, "not-a-chat", ids[0], "x"), 404, "chat-not-found")
    assert_error(await edit(alice, other, ids[0], "x"), 404, "message-not-found")  # not in that chat
    for body in ({}, {"message": ""}, {"message": 5}, {"message": "x" * 65537}, {"message": "x", "extra": 1}):
        resp = await alice.request("PATCH", f"/v1/chats/{chat}/messages/{ids[0]}", body)
        assert_error(resp, 400, "bad-parameters")
    assert await table_counts(database) == before
    assert [m["text"] for m in (await read_page(alice, chat, 10))[0]] == ["a0", "a1, fixed", "a2", "b0"]

    # delete: gone from pages, counts and last_message; a second delete or an edit is 404
    assert (await delete(bob, chat, ids[3])).status == 204
    assert_error(await delete(bob, chat, ids[3]), 404, "message-not-found")
    assert_error(await edit(bob, chat, ids[3], "back"), 404, "message-not-found")
    assert await texts_of(alice, chat) == ["a0", "a1, fixed", "a2"]
    summary = {s["chat_id"]: s for s in await my_chats(alice)}[chat]
    assert summary["unread"] == 0 and summary["last_message"]["text"] == "a2"
    assert await texts_of(alice, chat, 10, summary["read_iterator"]) == []
    assert (await delete(alice, chat, ids[2])).status == 204
    assert {s["chat_id"]: s for s in await my_chats(alice)}[chat]["last_message"] == edited


async def test_unread_counts_follow_deletions_before_and_after_the_marker(srv: AppServer) -> None:
    alice = await account(srv.client, "alice")
    bob = await account(srv.client, "bob")
    chat = await create(alice, "c")
    a, _ = await member_of(alice, chat, "alice"), await member_of(bob, chat, "bob")
    ids = [await say(alice, chat, a, f"m{n}") for n in range(6)]
    assert (await unread_of(bob))[chat] == 6
    _, after_m2 = await read_page(bob, chat, 3)
    assert (await mark(bob, chat, after_m2)).status == 204
    assert (await unread_of(bob))[chat] == 3
    assert (await delete(alice, chat, ids[1])).status == 204  # before bob's marker: his count stays
    assert (await unread_of(bob))[chat] == 3
    assert (await delete(alice, chat, ids[4])).status == 204  # after it: one less
    assert (await unread_of(bob))[chat] == 2
    assert await texts_of(bob, chat, 10, after_m2) == ["m3", "m5"]
    # moving the marker over a deletion counts it right
    messages, after_m3 = await read_page(bob, chat, 1, after_m2)
    assert [m["text"] for m in messages] == ["m3"]
    assert (await mark(bob, chat, after_m3)).status == 204
    assert (await unread_of(bob))[chat] == 1
    messages, after_m5 = await read_page(bob, chat, 1, after_m3)
    assert [m["text"] for m in messages] == ["m5"]
    assert (await mark(bob, chat, after_m5)).status == 204
    assert (await unread_of(bob))[chat] == 0
    assert (await delete(alice, chat, ids[5])).status == 204
    assert (await unread_of(bob))[chat] == 0 and (await unread_of(alice))[chat] == 0


async def test_paging_across_a_deletion_with_an_old_iterator(env: dict[str, str]) -> None:
    async with chats_server(env) as server:
        client = server.client
        chat = await create(client)
        user = await join(client, chat)
        ids = [await say(client, chat, user, f"m{n}") for n in range(7)]
        first, after_first = await read_page(client, chat, 3)
        assert [m["text"] for m in first] == ["m0", "m1", "m2"]
        # the message the iterator points after, and the one right after it, go
        for gone in (ids[2], ids[3]):
            assert (await delete(client, chat, gone, f"?user_id={user}")).status == 204
        rest, after_rest = await read_page(client, chat, 3, after_first)
        assert [m["text"] for m in rest] == ["m4", "m5", "m6"]
        assert (await read_page(client, chat, 3, after_rest)) == ([], after_rest)
        assert [m["text"] for m in (await read_page(client, chat, 10))[0]] == ["m0", "m1", "m4", "m5", "m6"]
        # auth off: ?user_id= must be the author member
        other = await join(client, chat, "other")
        assert_error(await delete(client, chat, ids[0], f"?user_id={other}"), 404, "message-not-found")
        assert_error(await delete(client, chat, ids[0]), 404, "message-not-found")
        assert_error(await edit(client, chat, ids[0], "x", f"?user_id={other}"), 404, "message-not-found")
        resp = await edit(client, chat, ids[0], "m0!", f"?user_id={user}")
        assert resp.status == 200 and resp.json["text"] == "m0!", resp
        assert_error(await delete(client, uuid.uuid4().hex, ids[0], f"?user_id={user}"), 404, "chat-not-found")
        # a member that left edits no more
        assert (await remove(client, chat, user, f"?user_id={user}")).status == 204
        assert_error(await edit(client, chat, ids[0], "late", f"?user_id={user}"), 404, "message-not-found")


@pytest.mark.parametrize("cache_type", ["memory", "redis"])
async def test_a_cached_page_never_shows_old_text_or_a_deleted_message(env: dict[str, str], cache_type: str) -> None:
    async with chats_server(env, CACHE_TYPE=cache_type) as server:
        client = server.client
        chat = await create(client)
        user = await join(client, chat)
        ids = [await say(client, chat, user, f"m{n}") for n in range(4)]
        for _ in range(2):  # the full page (limit 2) and the tail (limit 10) are cached now
            assert await texts_of(client, chat, 2) == ["m0", "m1"]
            assert await texts_of(client, chat, 10) == ["m0", "m1", "m2", "m3"]
        assert (await edit(client, chat, ids[0], "m0 edited", f"?user_id={user}")).status == 200
        assert await texts_of(client, chat, 2) == ["m0 edited", "m1"]
        assert await texts_of(client, chat, 10) == ["m0 edited", "m1", "m2", "m3"]
        assert (await delete(client, chat, ids[1], f"?user_id={user}")).status == 204
        assert await texts_of(client, chat, 2) == ["m0 edited", "m2"]
        assert await texts_of(client, chat, 10) == ["m0 edited", "m2", "m3"]


async def test_edits_and_deletes_are_seen_by_a_second_server_s_next_read(env: dict[str, str]) -> None:
    async with auth_server(env, CACHE_TYPE="redis") as first, auth_server(env, CACHE_TYPE="redis") as second:
        alice = await account(first.client, "alice")
        chat = await create(alice, "c")
        a = await member_of(alice, chat, "alice")
        ids = [await say(alice, chat, a, f"m{n}") for n in range(3)]
        there = on(alice, second)
        for _ in range(3):  # the second server holds the full page in its own memory, and the tail in Redis
            assert await texts_of(there, chat, 2) == ["m0", "m1"]
            assert await texts_of(there, chat, 10) == ["m0", "m1", "m2"]
        assert (await edit(alice, chat, ids[0], "new m0")).status == 200
        assert await texts_of(there, chat, 2) == ["new m0", "m1"]
        assert await texts_of(there, chat, 10) == ["new m0", "m1", "m2"]
        assert (await delete(alice, chat, ids[1])).status == 204
        assert await texts_of(there, chat, 2) == ["new m0", "m2"]
        assert await texts_of(there, chat, 10) == ["new m0", "m2"]


@pytest.mark.parametrize("cache_type", ["memory", "redis"])
async def test_edits_and_deletes_are_seen_by_every_worker_process(
        env: dict[str, str], tmp_path: Path, cache_type: str) -> None:
    proc, client = await start_api({**env, "WORKERS": "2", "CACHE_TYPE": cache_type,
                                    "MESSENGER_APPS": "messenger_chats"}, tmp_path / "api.log")
    try:
        chat = await create(client)
        user = await join(client, chat)
        ids = [await say(client, chat, user, f"m{n}") for n in range(3)]
        for _ in range(12):  # a new connection each time: both workers cache the pages
            assert await texts_of(client, chat, 2) == ["m0", "m1"]
            assert await texts_of(client, chat, 10) == ["m0", "m1", "m2"]
        assert (await edit(client, chat, ids[1], "m1 edited", f"?user_id={user}")).status == 200
        for _ in range(12):
            assert await texts_of(client, chat, 2) == ["m0", "m1 edited"]
            assert await texts_of(client, chat, 10) == ["m0", "m1 edited", "m2"]
        assert (await delete(client, chat, ids[0], f"?user_id={user}")).status == 204
        for _ in range(12):
            assert await texts_of(client, chat, 2) == ["m1 edited", "m2"]
    finally:
        assert proc.stop() == 0


async def test_a_search_started_after_the_change_sees_it(srv: AppServer) -> None:
    alice = await account(srv.client, "alice")
    chat = await create(alice, "c")
    a = await member_of(alice, chat, "alice")
    typo = await say(alice, chat, a, "the narwhal is here")
    gone = await say(alice, chat, a, "a pangolin secret")
    assert await found(alice, "narwhal") == ["the narwhal is here"]
    assert await found(alice, "pangolin") == ["a pangolin secret"]
    assert (await edit(alice, chat, typo, "the capybara is here")).status == 200
    assert (await delete(alice, chat, gone)).status == 204
    assert await found(alice, "narwhal") == []
    assert await found(alice, "capybara") == ["the capybara is here"]
    assert await found(alice, "pangolin") == []


async def test_each_change_sends_its_chat_event_on_commit(srv: AppServer, database: str) -> None:
    async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as listener:
        await listener.execute("LISTEN messenger_chats")
        alice = await account(srv.client, "alice")
        chat = await create(alice, "c")
        a = await member_of(alice, chat, "alice")
        message = await say(alice, chat, a, "m0")
        assert (await edit(alice, chat, message, "m0!")).status == 200
        assert (await delete(alice, chat, message)).status == 204
        assert_error(await delete(alice, chat, message), 404, "message-not-found")  # rolled back: no event
        assert (await remove(alice, chat, a)).status == 204
        payloads: list[dict] = []

        async def collect() -> bool:
            gen = listener.notifies(timeout=0.2)
            async for note in gen:
                payloads.append(json.loads(note.payload))
            return len([p for p in payloads if p["k"] != "post"]) >= 4
        await poll(collect, timeout=5)
    events = [p for p in payloads if p["k"] != "post"]  # posts are announced by the insert (another piece)
    assert [p["k"] for p in events] == ["join", "edit", "delete", "leave"], payloads
    join_event, edit_event, delete_event, leave_event = events
    assert join_event["c"] == chat and join_event["u"] == a and len(join_event["a"]) == 32
    # "v": the chat's version at the change (at the join: before any), which the message keeps as its marker
    assert join_event["v"] == 0
    assert edit_event == {"k": "edit", "c": chat, "m": message, "s": 1, "v": 1}
    assert delete_event == {"k": "delete", "c": chat, "m": message, "s": 1, "v": 2}
    async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as conn:
        cur = await conn.execute("SELECT changed FROM messages WHERE id = %s", (uuid.UUID(message),))
        assert await cur.fetchone() == (2,)
    assert leave_event == {"k": "leave", "c": chat, "u": a, "a": join_event["a"]}
