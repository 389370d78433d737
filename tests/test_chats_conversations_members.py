"""Conversations: the members list, leaving and removal, and access cut at once in every worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chats_support import chats_server, join, page, say, table_counts
from conversations_support import (FAST_HASH, WITH_SEARCH, account, auth_server, create, found, invite_to, member_of,
                                   members, my_chats, on, remove, texts_of)
from support import AppServer, Client, assert_error, start_api


@pytest.fixture
async def srv(env: dict[str, str]) -> AsyncIterator[AppServer]:
    async with auth_server(env, plugins=WITH_SEARCH) as server:
        yield server


async def test_members_leave_and_the_owner_removes(srv: AppServer, database: str) -> None:
    alice = await account(srv.client, "alice")
    bob = await account(srv.client, "bob")
    carol = await account(srv.client, "carol")
    chat = await create(alice, "team", private=True)
    a = await member_of(alice, chat, "alice")
    invite = await invite_to(alice, chat)
    b1 = await member_of(bob, chat, "bob", invite)
    b2 = await member_of(bob, chat, "bob's phone")
    c = await member_of(carol, chat, "carol", invite)
    await say(bob, chat, b1, "quokka from bob")

    resp = await members(bob, chat)
    assert resp.status == 200, resp
    assert resp.json == {"users": [{"user_id": a, "user_name": "alice", "mine": False},
                                   {"user_id": b1, "user_name": "bob", "mine": True},
                                   {"user_id": b2, "user_name": "bob's phone", "mine": True},
                                   {"user_id": c, "user_name": "carol", "mine": False}]}
    before = await table_counts(database)
    # nobody but the owner removes another account's member; unknown or malformed ids are 404 too
    for target in (a, c, "not-a-uuid", "0" * 32):
        assert_error(await remove(bob, chat, target), 404, "user-not-found")
    assert_error(await remove(bob, "not-a-chat", b1), 404, "chat-not-found")
    assert await table_counts(database) == before

    # bob leaves with one member: he is still in (the other), his messages stay
    assert (await remove(bob, chat, b1)).status == 204
    assert_error(await remove(bob, chat, b1), 404, "user-not-found")  # already gone
    assert_error(await bob.post(f"/v1/chats/{chat}/messages?user_id={b1}", {"message": "x"}), 404, "user-not-found")
    await say(bob, chat, b2, "still here")
    assert [s["my_user_ids"] for s in await my_chats(bob)] == [[b2]]
    # the owner removes bob's last member: bob reads, posts, lists, searches there no more
    assert (await remove(alice, chat, b2)).status == 204
    assert_error(await page(bob, chat, 10), 404, "chat-not-found")
    assert_error(await bob.post(f"/v1/chats/{chat}/messages?user_id={b2}", {"message": "x"}), 404, "chat-not-found")
    assert_error(await members(bob, chat), 404, "chat-not-found")
    assert_error(await bob.post(f"/v1/chats/{chat}/invites"), 404, "chat-not-found")
    assert await my_chats(bob) == []
    assert await found(bob, "quokka") == []
    # a private chat is closed to him again: only a (valid) invite lets him back
    assert_error(await bob.post(f"/v1/chats/{chat}/users", {"user_name": "bob"}), 404, "chat-not-found")
    assert await texts_of(alice, chat) == ["quokka from bob", "still here"]  # messages stay
    assert await found(alice, "quokka") == ["quokka from bob"]
    assert [u["user_id"] for u in (await members(alice, chat)).json["users"]] == [a, c]
    # the owner leaves too, and may come back without an invite
    assert (await remove(alice, chat, a)).status == 204
    assert await my_chats(alice) == []
    await member_of(alice, chat, "alice again")
    assert [s["owner"] for s in await my_chats(alice)] == [True]


async def test_with_auth_off_a_member_leaves_only_itself(env: dict[str, str]) -> None:
    async with chats_server(env) as server:
        client: Client = server.client
        chat = await create(client)
        one, two = await join(client, chat, "one"), await join(client, chat, "two")
        await say(client, chat, one, "hi")
        listed = await members(client, chat, f"?user_id={one}")
        assert listed.status == 200 and [u["mine"] for u in listed.json["users"]] == [True, False], listed
        assert_error(await remove(client, chat, two, f"?user_id={one}"), 404, "user-not-found")
        assert_error(await remove(client, chat, two), 404, "user-not-found")
        assert_error(await members(client, "0" * 32), 404, "chat-not-found")
        assert (await remove(client, chat, two, f"?user_id={two}")).status == 204
        assert_error(await client.post(f"/v1/chats/{chat}/messages?user_id={two}", {"message": "x"}),
                     404, "user-not-found")
        assert [u["user_id"] for u in (await members(client, chat)).json["users"]] == [one]
        assert await texts_of(client, chat) == ["hi"]


async def test_leaving_cuts_access_at_once_in_a_second_server_that_cached_the_membership(
        env: dict[str, str]) -> None:
    # two servers on one database and one Redis prefix: each its own near cache and in-process facts
    async with auth_server(env, CACHE_TYPE="redis") as first, auth_server(env, CACHE_TYPE="redis") as second:
        alice = await account(first.client, "alice")
        bob = await account(first.client, "bob")
        chat = await create(alice, "c")
        a = await member_of(alice, chat, "alice")
        b = await member_of(bob, chat, "bob")
        await say(alice, chat, a, "m0")
        bob_there = on(bob, second)
        for _ in range(3):  # the second server now holds bob's membership (and the page) in its caches
            assert await texts_of(bob_there, chat) == ["m0"]
        assert second.runtime.near is not None and len(second.runtime.near) > 0

        assert (await remove(bob, chat, b)).status == 204  # answered by the first server
        assert_error(await page(bob_there, chat, 100), 404, "chat-not-found")
        assert_error(await bob_there.post(f"/v1/chats/{chat}/messages?user_id={b}", {"message": "x"}),
                     404, "chat-not-found")

        # removal by the owner, the same way
        b = await member_of(bob, chat, "bob again")
        for _ in range(3):
            assert await texts_of(bob_there, chat) == ["m0"]
        await say(bob_there, chat, b, "m1")
        assert (await remove(alice, chat, b)).status == 204
        assert_error(await page(bob_there, chat, 100), 404, "chat-not-found")
        assert await texts_of(on(alice, second), chat) == ["m0", "m1"]


@pytest.mark.parametrize("cache_type", ["memory", "redis"])
async def test_leaving_cuts_access_at_once_in_every_worker_process(
        env: dict[str, str], tmp_path: Path, cache_type: str) -> None:
    proc, client = await start_api({**env, **FAST_HASH, "WORKERS": "2", "CACHE_TYPE": cache_type,
                                    "MESSENGER_APPS": "messenger_auth,messenger_chats"}, tmp_path / "api.log")
    try:
        alice = await account(client, "alice")
        bob = await account(client, "bob")
        chat = await create(alice, "c")
        a = await member_of(alice, chat, "alice")
        b = await member_of(bob, chat, "bob")
        await say(alice, chat, a, "m0")
        for _ in range(12):  # a new connection each time: both workers cache the membership and the page
            assert await texts_of(bob, chat, 10) == ["m0"]
        assert (await remove(bob, chat, b)).status == 204
        for _ in range(12):
            assert_error(await page(bob, chat, 10), 404, "chat-not-found")
    finally:
        assert proc.stop() == 0
