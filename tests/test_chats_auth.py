"""Chats with auth on: only accounts that joined a chat read or post in it, only as their own members."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest

from chats_support import join, new_chat, page, read_all, read_page, say
from conversations_support import account
from messenger_chats.api import chats_of_account, member_scope
from support import AppServer, Client, TcpProxy, assert_error, serve_app

AUTH_AND_CHATS = ("messenger_auth", "messenger_chats")
FAST_HASH = {"AUTH_SCRYPT_N": "1024"}  # tests need no brute-force resistance


@asynccontextmanager
async def auth_server(env: Mapping[str, str], **overrides: Any) -> AsyncIterator[AppServer]:
    async with serve_app({**env, **FAST_HASH, **{k: str(v) for k, v in overrides.items()}},
                         plugins=AUTH_AND_CHATS) as srv:
        yield srv


@pytest.fixture
async def server_with_auth(env: dict[str, str]) -> AsyncIterator[AppServer]:
    async with auth_server(env) as srv:
        yield srv


async def post(client: Client, chat: str, user: str, text: str = "hi") -> Any:
    return await client.post(f"/v1/chats/{chat}/messages?user_id={user}", {"message": text})


async def test_every_chats_endpoint_needs_a_session(server_with_auth: AppServer) -> None:
    anonymous = server_with_auth.client
    alice = await account(anonymous, "alice")
    chat = await new_chat(alice)
    user = await join(alice, chat)
    await say(alice, chat, user, "private")
    bad = anonymous.with_headers(Authorization=f"session_id {uuid.uuid4().hex}")
    for client, code in ((anonymous, "auth-failed"), (bad, "invalid-session-id")):
        assert_error(await client.post("/v1/chats", {"chat_name": "x"}), 401, code)
        assert_error(await client.post(f"/v1/chats/{chat}/users", {"user_name": "x"}), 401, code)
        assert_error(await post(client, chat, user), 401, code)
        assert_error(await page(client, chat, 10), 401, code)
    assert [m["text"] for m in await read_all(alice, chat)] == ["private"]


async def test_only_members_read_and_post_and_only_as_themselves(server_with_auth: AppServer) -> None:
    alice = await account(server_with_auth.client, "alice")
    bob = await account(server_with_auth.client, "bob")
    chat = await new_chat(alice, "Alice's chat")
    # creating a chat does not join it
    assert_error(await page(alice, chat, 10), 404, "chat-not-found")
    alice_member = await join(alice, chat, "Alice")
    await say(alice, chat, alice_member, "from alice")
    _, alice_iterator = await read_page(alice, chat, 10)

    # bob has not joined: the chat does not exist for him, whatever he sends
    assert_error(await page(bob, chat, 10), 404, "chat-not-found")
    assert_error(await page(bob, chat, 10, alice_iterator), 404, "chat-not-found")
    assert_error(await post(bob, chat, alice_member), 404, "chat-not-found")
    assert_error(await post(bob, chat, uuid.uuid4().hex), 404, "chat-not-found")
    # same answers as for a chat that really does not exist
    assert_error(await page(bob, uuid.uuid4().hex, 10), 404, "chat-not-found")
    assert_error(await post(bob, uuid.uuid4().hex, alice_member), 404, "chat-not-found")

    bob_member = await join(bob, chat, "Bob")
    assert_error(await post(bob, chat, alice_member, "as alice"), 404, "user-not-found")  # not his member
    assert_error(await post(alice, chat, bob_member, "as bob"), 404, "user-not-found")
    assert_error(await post(bob, chat, uuid.uuid4().hex), 404, "user-not-found")
    await say(bob, chat, bob_member, "from bob")
    for reader in (alice, bob):
        messages = await read_all(reader, chat)
        assert [(m["user_id"], m["text"]) for m in messages] == [(alice_member, "from alice"),
                                                                 (bob_member, "from bob")]
    # bob's member of another chat does not let him post here as it
    other = await new_chat(bob, "Bob's other chat")
    bob_elsewhere = await join(bob, other, "Bob")
    assert_error(await post(bob, chat, bob_elsewhere), 404, "user-not-found")
    assert_error(await post(alice, other, alice_member), 404, "chat-not-found")
    assert len(await read_all(alice, chat)) == 2 and await read_all(bob, other) == []


async def test_members_are_linked_to_accounts_for_the_public_api(server_with_auth: AppServer) -> None:
    alice = await account(server_with_auth.client, "alice")
    bob = await account(server_with_auth.client, "bob")
    first, second, bobs = await new_chat(alice), await new_chat(alice), await new_chat(bob)
    alice_first = await join(alice, first)
    await join(alice, first)  # joining twice: two members, still one chat
    await join(alice, second)
    bob_member = await join(bob, bobs)
    db = server_with_auth.runtime.db
    row = await db.fetchone("SELECT account_id FROM chat_members WHERE id = %s", (uuid.UUID(alice_first),))
    alice_account = row["account_id"]
    assert sorted(await chats_of_account(db, alice_account)) == sorted([uuid.UUID(first), uuid.UUID(second)])
    assert await chats_of_account(db, alice_account.hex) == await chats_of_account(db, alice_account)
    assert await chats_of_account(db, uuid.uuid4()) == []
    assert sorted(await member_scope(db, uuid.UUID(alice_first))) == sorted([uuid.UUID(first), uuid.UUID(second)])
    assert await member_scope(db, uuid.UUID(bob_member)) == [uuid.UUID(bobs)]
    assert await member_scope(db, uuid.uuid4()) is None


async def test_member_scope_without_auth_is_the_members_chat(env: dict[str, str]) -> None:
    async with auth_server(env, AUTH_DISABLED=1) as srv:
        chat = await new_chat(srv.client)
        member = await join(srv.client, chat)
        await join(srv.client, await new_chat(srv.client))
        assert await member_scope(srv.runtime.db, uuid.UUID(member)) == [uuid.UUID(chat)]


async def test_auth_disabled_opens_everything_like_the_course_runs_it(env: dict[str, str]) -> None:
    async with auth_server(env, AUTH_DISABLED="true") as srv:
        client = srv.client  # no Authorization header at all
        chat = await new_chat(client, "Pupkin chat")
        user = await join(client, chat, "Vasya Pupkin")
        await say(client, chat, user, "Hello world")
        assert [m["text"] for m in await read_all(client, chat)] == ["Hello world"]
        assert_error(await post(client, chat, "random_user"), 404, "user-not-found")


async def test_a_hot_read_with_auth_touches_only_the_cache(env: dict[str, str]) -> None:
    proxy = TcpProxy(5432)
    try:
        async with auth_server(env, POSTGRES_HOSTS=f"127.0.0.1:{proxy.port}", DB_TIMEOUT=0.5) as srv:
            alice = await account(srv.client, "alice")
            bob = await account(srv.client, "bob")
            chat = await new_chat(alice)
            alice_member = await join(alice, chat)
            await say(alice, chat, alice_member, "cached")
            hot = await page(alice, chat, 10)
            assert hot.status == 200
            bob_member = await join(bob, chat)
            await say(bob, chat, bob_member, "second")
            hot = await page(alice, chat, 10)
            assert [m["text"] for m in hot.json["messages"]] == ["cached", "second"]
            proxy.cut()
            # sessions, membership facts and the page all come from the cache
            assert (await page(alice, chat, 10)).body == hot.body
            assert (await page(bob, chat, 10)).body == hot.body
            assert_error(await page(alice, chat, 5), 503, "database-unavailable")
            proxy.restore()
    finally:
        proxy.close()
