"""Search with auth on: the session's account decides the scope and who may see a task."""

from __future__ import annotations

from auth_support import bearer, new_session
from chats_support import join, new_chat, say
from search_support import read_results, results, search_server, search_texts, start_search, status, wait_status
from support import assert_error

WITH_AUTH = ("messenger_auth", "messenger_chats", "messenger_search")


async def test_account_scope_and_foreign_tasks_are_not_found(env: dict[str, str]) -> None:
    async with search_server(env, plugins=WITH_AUTH, AUTH_SCRYPT_N=1024) as srv:
        alice = srv.client.with_headers(**bearer(await new_session(srv.client, "alice")))
        bob = srv.client.with_headers(**bearer(await new_session(srv.client, "bob")))
        chat_one, chat_two = await new_chat(alice, "one"), await new_chat(alice, "two")
        member_one, member_two = await join(alice, chat_one, "alice"), await join(alice, chat_two, "alice")
        await say(alice, chat_one, member_one, "the first pangolin")
        await say(alice, chat_two, member_two, "the second pangolin")
        bobs_chat = await new_chat(bob, "bob's")
        bob_member = await join(bob, bobs_chat, "bob")
        await say(bob, bobs_chat, bob_member, "bob's own pangolin")

        # the account's chats, both of them, newest first; user_id is not needed (nor used)
        assert await search_texts(alice, "pangolin") == ["the second pangolin", "the first pangolin"]
        assert await search_texts(alice, "pangolin", bob_member) == ["the second pangolin", "the first pangolin"]
        assert await search_texts(bob, "pangolin") == ["bob's own pangolin"]

        task_id = await start_search(alice, "pangolin")
        await wait_status(alice, task_id)
        assert_error(await status(bob, task_id), 404, "task-not-found")
        assert_error(await results(bob, task_id, limit=5), 404, "task-not-found")
        assert_error(await results(bob, task_id, limit=5, start="1"), 404, "task-not-found")
        # bob's attempt acknowledged nothing: alice still has both results
        found, iterator = await read_results(alice, task_id, limit=5)
        assert [item["text"] for item in found] == ["the second pangolin", "the first pangolin"]
        assert {item["chat_id"] for item in found} == {chat_one, chat_two} and iterator == "2"

        # no session: 401 before anything else
        for resp in (await srv.client.post("/v1/chats/search", {"message": "pangolin"}),
                     await status(srv.client, task_id), await results(srv.client, task_id, limit=5)):
            assert_error(resp, 401, "auth-failed")
        assert_error(await alice.post("/v1/chats/search", {"message": "pan"}), 400, "bad-parameters")


async def test_an_account_without_chats_finds_nothing(env: dict[str, str]) -> None:
    async with search_server(env, plugins=WITH_AUTH, AUTH_SCRYPT_N=1024) as srv:
        owner = srv.client.with_headers(**bearer(await new_session(srv.client, "owner")))
        loner = srv.client.with_headers(**bearer(await new_session(srv.client, "loner")))
        chat = await new_chat(owner)
        await say(owner, chat, await join(owner, chat), "a hidden narwhal")
        assert await search_texts(loner, "narwhal") == []
        assert await search_texts(owner, "narwhal") == ["a hidden narwhal"]
