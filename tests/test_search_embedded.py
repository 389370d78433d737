"""Search through the embedded worker (no RMQ_URL), auth disabled: PostgreSQL is all it needs."""

from __future__ import annotations

import asyncio
from datetime import datetime

import psycopg

from chats_support import join, new_chat, say
from search_support import (check_paging, read_results, results, search_server, search_texts, start_search,
                            status, wait_status)
from support import assert_error, conninfo, poll


async def test_planted_word_found_in_own_chats_newest_first_paged_and_acknowledged(env: dict[str, str]) -> None:
    async with search_server(env) as srv:
        client = srv.client
        chat_a, chat_b = await new_chat(client, "a"), await new_chat(client, "b")
        alice, bob = await join(client, chat_a, "alice"), await join(client, chat_a, "bob")
        carol = await join(client, chat_b, "carol")
        planted = []
        for i in range(5):
            author = alice if i % 2 else bob
            planted.append((await say(client, chat_a, author, f"message {i} mentions the xylophone"), author))
            await say(client, chat_a, alice, f"filler {i} about nothing")
        foreign = await say(client, chat_b, carol, "carol's xylophone is elsewhere")

        task_id = await start_search(client, "xylophone", alice)
        await wait_status(client, task_id, user_id=alice)
        found, iterator = await read_results(client, task_id, limit=1000, user_id=alice)
        assert [item["message_id"] for item in found] == [mid for mid, _ in reversed(planted)]
        assert foreign not in {item["message_id"] for item in found}
        assert all(item["chat_id"] == chat_a for item in found)
        assert [item["user_id"] for item in found] == [author for _, author in reversed(planted)]
        assert found[0]["text"] == "message 4 mentions the xylophone"
        stamps = [datetime.fromisoformat(item["created_at"]) for item in found]
        assert stamps == sorted(stamps, reverse=True)
        assert iterator == "5"

        await check_paging(client, task_id, found)

        # carol sees only her own chat
        assert await search_texts(client, "xylophone", carol) == ["carol's xylophone is elsewhere"]


async def test_stemming_phrases_exclusions_and_short_text(env: dict[str, str]) -> None:
    async with search_server(env) as srv:
        client = srv.client
        chat = await new_chat(client)
        user = await join(client, chat)
        texts = ["Мы долго гуляли с кошками по парку", "Кошка спит на диване", "Собаки лают громко",
                 "The children were running quickly", "She runs every morning", "quick brown fox jumps",
                 "brown quick fox sleeps", "the fox and the dog"]
        for text in texts:
            await say(client, chat, user, text)

        assert set(await search_texts(client, "кошка", user)) == {texts[0], texts[1]}
        assert await search_texts(client, "гулять кошки", user) == [texts[0]]
        assert set(await search_texts(client, "runs", user)) == {texts[3], texts[4]}
        assert await search_texts(client, "children ran", user) == []  # "ran" is not stemmed to "run"
        assert await search_texts(client, "children run", user) == [texts[3]]
        assert set(await search_texts(client, "quick brown", user)) == {texts[5], texts[6]}
        assert await search_texts(client, '"quick brown"', user) == [texts[5]]
        assert set(await search_texts(client, "fox -brown", user)) == {texts[7]}
        assert set(await search_texts(client, "fox -dog", user)) == {texts[5], texts[6]}
        assert await search_texts(client, "жираф", user) == []

        for body in ({"message": "abc"}, {"message": ""}, {"message": "x" * 1025}, {"message": 1234},
                     {"message": "quick\x00brown"}, {"text": "long enough"}, [], None):
            resp = await client.post(f"/v1/chats/search?user_id={user}", body)
            assert_error(resp, 400, "bad-parameters")
        resp = await client.post(f"/v1/chats/search?user_id={user}", raw=b"{not json")
        assert_error(resp, 400, "bad-parameters")
        assert await search_texts(client, "abcd", user) == []  # 4 characters is enough


async def test_user_and_task_checks_with_auth_disabled(env: dict[str, str]) -> None:
    async with search_server(env) as srv:
        client = srv.client
        chat = await new_chat(client)
        user, other = await join(client, chat, "u"), await join(client, chat, "v")
        await say(client, chat, user, "planted word zebra")
        for query in ("", "?user_id=", "?user_id=nope", "?user_id=" + "0" * 32):
            resp = await client.post("/v1/chats/search" + query, {"message": "zebra"})
            assert_error(resp, 404, "user-not-found")
        # user_id is checked before the body, as for chat messages
        assert_error(await client.post("/v1/chats/search", {"message": "ab"}), 404, "user-not-found")

        task_id = await start_search(client, "zebra", user)
        await wait_status(client, task_id, user_id=user)
        for missing in ("0" * 32, "not-a-uuid", task_id[:-1]):
            assert_error(await status(client, missing), 404, "task-not-found")
            assert_error(await results(client, missing), 404, "task-not-found")
        # another member's task is not found; the owner (or no user_id at all) sees it
        assert_error(await status(client, task_id, other), 404, "task-not-found")
        assert_error(await results(client, task_id, user_id=other), 404, "task-not-found")
        assert_error(await status(client, task_id, "garbage"), 404, "task-not-found")
        assert (await status(client, task_id, user)).json == {"status": "SUCCESS"}
        assert (await status(client, task_id)).json == {"status": "SUCCESS"}
        found, _ = await read_results(client, task_id, user_id=user)
        assert [item["text"] for item in found] == ["planted word zebra"]
        assert_error(await client.request("DELETE", f"/v1/chats/search/status/{task_id}"), 405,
                     "method-not-allowed")


async def test_in_process_task_is_not_complete_and_deadline_keeps_what_it_found(
        env: dict[str, str], database: str) -> None:
    async with search_server(env, SEARCH_TIMEOUT="1.5") as srv:
        client = srv.client
        chat = await new_chat(client)
        user = await join(client, chat)
        await say(client, chat, user, "a locked giraffe")
        async with await psycopg.AsyncConnection.connect(conninfo(database)) as locker:
            await locker.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
            started = asyncio.get_running_loop().time()
            task_id = await start_search(client, "giraffe", user)
            await wait_status(client, task_id, "IN_PROCESS", user)
            assert_error(await results(client, task_id, limit=10), 400, "task-not-complete")
            # the query waits on the lock; at SEARCH_TIMEOUT the task ends SUCCESS with what it had
            await wait_status(client, task_id, "SUCCESS", user)
            assert asyncio.get_running_loop().time() - started < 5
            assert await read_results(client, task_id, limit=10) == ([], "0")
            await locker.rollback()
        assert await search_texts(client, "giraffe", user) == ["a locked giraffe"]


async def test_finished_tasks_expire_after_the_ttl(env: dict[str, str]) -> None:
    async with search_server(env, SEARCH_TASK_TTL="1") as srv:
        client = srv.client
        chat = await new_chat(client)
        user = await join(client, chat)
        await say(client, chat, user, "ephemeral okapi")
        task_id = await start_search(client, "okapi", user)
        await wait_status(client, task_id, user_id=user)
        assert (await read_results(client, task_id, limit=1))[0][0]["text"] == "ephemeral okapi"

        async def expired() -> bool:
            return (await status(client, task_id)).status == 404
        await poll(expired, timeout=5)
        assert_error(await results(client, task_id, limit=1), 404, "task-not-found")
