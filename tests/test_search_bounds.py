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


async def test_an_account_may_have_search_max_pending_tasks_outstanding(env: dict[str, str], database: str) -> None:
    async with search_server(env, plugins=WITH_AUTH, AUTH_SCRYPT_N=1024, SEARCH_MAX_PENDING=3,
                             SEARCH_TIMEOUT=60) as srv:
        alice = srv.client.with_headers(**bearer(await new_session(srv.client, "alice")))
        bob = srv.client.with_headers(**bearer(await new_session(srv.client, "bob")))
        for client, name in ((alice, "alice"), (bob, "bob")):
            chat = await new_chat(client, name)
            await say(client, chat, await join(client, chat, name), f"{name}'s quokka")
        async with await psycopg.AsyncConnection.connect(conninfo(database)) as locker:
            # the worker's query waits on this lock: the tasks stay outstanding (IN_PROCESS or WAITING)
            await locker.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
            held = [await start_search(alice, "quokka") for _ in range(3)]
            refused = await alice.post("/v1/chats/search", {"message": "quokka"})
            assert_error(refused, 429, "request-limit-exceeded")
            assert int(refused.headers["Retry-After"]) >= 1
            bobs = await start_search(bob, "quokka")  # another account has its own bound
            assert_error(await alice.post("/v1/chats/search", {"message": "quokka"}), 429, "request-limit-exceeded")
            await locker.rollback()
        for task_id in held:
            await wait_status(alice, task_id)
            assert [item["text"] for item in (await read_results(alice, task_id))[0]] == ["alice's quokka"]
        await wait_status(bob, bobs)
        # finished tasks no longer count
        again = [await start_search(alice, "quokka") for _ in range(3)]
        for task_id in again:
            await wait_status(alice, task_id)


async def test_without_auth_the_bound_counts_per_client_in_redis(
        rabbit_env: dict[str, str], redis_keys: aioredis.Redis, tmp_path: Path) -> None:
    # pylint: disable=unused-argument  # redis_keys: removes this test's keys afterwards
    async with search_server(rabbit_env, SEARCH_MAX_PENDING=2) as srv:
        client = srv.client
        members = []
        for name in ("one", "two"):
            chat = await new_chat(client, name)
            member = await join(client, chat, name)
            await say(client, chat, member, f"the {name} okapi")
            members.append(member)
        # no consumer runs: the tasks wait in RabbitMQ
        held = [await start_search(client, "okapi", members[0]), await start_search(client, "okapi", members[1])]
        # another member from the same client changes nothing: members cost nothing to make
        for member in members:
            resp = await client.post(f"/v1/chats/search?user_id={member}", {"message": "okapi"})
            assert_error(resp, 429, "request-limit-exceeded")
            assert int(resp.headers["Retry-After"]) >= 1
        worker = await consumer(rabbit_env, tmp_path / "consumer.log")
        try:
            for task_id, member, name in zip(held, members, ("one", "two")):
                await wait_status(client, task_id, user_id=member)
                assert [item["text"] for item in (await read_results(client, task_id))[0]] == [f"the {name} okapi"]
            task_id = await start_search(client, "okapi", members[0])
            await wait_status(client, task_id)
        finally:
            worker.stop()
