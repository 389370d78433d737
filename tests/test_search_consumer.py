"""Search end to end through RabbitMQ, real ``messenger-consumer`` processes and Redis (auth disabled)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import redis.asyncio as aioredis

from chats_support import join, new_chat, say
from search_support import (check_paging, consumer, read_results, results, search_server, search_texts,
                            start_search, status, wait_status)
from search_support import rabbit_env_fixture  # noqa: F401  pylint: disable=unused-import
from support import assert_error, conninfo, poll

TTL = 6  # seconds a finished task lives: long enough for the checks below on a loaded machine


async def test_end_to_end_with_two_consumers_scoped_paged_acknowledged_expired(
        rabbit_env: dict[str, str], redis_keys: aioredis.Redis, tmp_path: Path) -> None:
    prefix = rabbit_env["CACHE_PREFIX"]
    async with search_server(rabbit_env, SEARCH_TASK_TTL=TTL) as srv:
        client = srv.client
        chat_a, chat_b = await new_chat(client, "a"), await new_chat(client, "b")
        alice, carol = await join(client, chat_a, "alice"), await join(client, chat_b, "carol")
        planted = [await say(client, chat_a, alice, f"planted marmoset number {i}") for i in range(5)]
        await say(client, chat_b, carol, "carol's marmoset")

        # accepted while no consumer runs: it waits in RabbitMQ, nothing is lost
        task_id = await start_search(client, "marmoset", alice)
        assert (await status(client, task_id)).json == {"status": "WAITING"}
        assert_error(await results(client, task_id, limit=5), 400, "task-not-complete")
        assert await redis_keys.hget(f"{prefix}search:task:{task_id}", "status") == b"WAITING"

        first = await consumer(rabbit_env, tmp_path / "c1.log", SEARCH_TASK_TTL=str(TTL), LOG_LEVEL="DEBUG")
        second = await consumer(rabbit_env, tmp_path / "c2.log", SEARCH_TASK_TTL=str(TTL), LOG_LEVEL="DEBUG")
        try:
            await wait_status(client, task_id, user_id=alice)
            found, _ = await read_results(client, task_id, user_id=alice)
            assert [item["message_id"] for item in found] == planted[::-1]
            assert {item["chat_id"] for item in found} == {chat_a}
            assert await redis_keys.llen(f"{prefix}search:results:{task_id}") == 5
            await check_paging(client, task_id, found)
            # every result was acknowledged: the list is gone from Redis, the task stays until its TTL
            assert await redis_keys.exists(f"{prefix}search:results:{task_id}") == 0
            assert 0 < await redis_keys.ttl(f"{prefix}search:task:{task_id}") <= TTL

            # several searches at once are shared by both consumers
            tasks = [await start_search(client, "marmoset", carol) for _ in range(8)]
            for other in tasks:
                await wait_status(client, other, user_id=carol)
                assert (await read_results(client, other))[0][0]["text"] == "carol's marmoset"
            assert "SUCCESS" in first.log and "SUCCESS" in second.log

            async def expired() -> bool:
                return (await status(client, task_id)).status == 404
            await poll(expired, timeout=TTL + 6)
            assert await redis_keys.exists(f"{prefix}search:task:{task_id}") == 0
        finally:
            first.stop()
            second.stop()


async def test_a_consumer_killed_mid_task_leaves_it_to_another(
        rabbit_env: dict[str, str], redis_keys: aioredis.Redis, database: str, tmp_path: Path) -> None:
    # pylint: disable=unused-argument
    async with search_server(rabbit_env) as srv:
        client = srv.client
        chat = await new_chat(client)
        user = await join(client, chat)
        await say(client, chat, user, "a kangaroo survives")
        first = await consumer(rabbit_env, tmp_path / "c1.log", SEARCH_TIMEOUT="60")
        second = None
        try:
            async with await psycopg.AsyncConnection.connect(conninfo(database)) as locker:
                # the consumer's query waits on this lock: the task is really in progress
                await locker.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
                task_id = await start_search(client, "kangaroo", user)
                await wait_status(client, task_id, "IN_PROCESS")
                first.kill()
                await locker.rollback()
            assert (await status(client, task_id)).json == {"status": "IN_PROCESS"}
            second = await consumer(rabbit_env, tmp_path / "c2.log")
            await wait_status(client, task_id, "SUCCESS")
            assert "redelivered" in second.log
            assert [item["text"] for item in (await read_results(client, task_id))[0]] == ["a kangaroo survives"]
        finally:
            first.stop()
            if second is not None:
                second.stop()


async def test_a_task_that_keeps_killing_consumers_ends_failed(
        rabbit_env: dict[str, str], redis_keys: aioredis.Redis, database: str, tmp_path: Path) -> None:
    # pylint: disable=unused-argument
    one_run = {"SEARCH_MAX_ATTEMPTS": "1"}
    async with search_server(rabbit_env, **one_run) as srv:
        client = srv.client
        chat = await new_chat(client)
        user = await join(client, chat)
        await say(client, chat, user, "a doomed wombat")
        first = await consumer(rabbit_env, tmp_path / "c1.log", SEARCH_TIMEOUT="60", **one_run)
        second = None
        try:
            async with await psycopg.AsyncConnection.connect(conninfo(database)) as locker:
                await locker.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
                task_id = await start_search(client, "wombat", user)
                await wait_status(client, task_id, "IN_PROCESS")
                first.kill()  # run 1 of 1 never finished
                await locker.rollback()
            second = await consumer(rabbit_env, tmp_path / "c2.log", **one_run)
            await wait_status(client, task_id, "FAILED")
            assert "gave up: 1 earlier run(s) did not finish" in second.log
            assert_error(await results(client, task_id, limit=5), 400, "task-failed")
            # the queue is drained (the message was acked): a new search still works
            assert await search_texts(client, "wombat", user) == ["a doomed wombat"]
        finally:
            first.stop()
            if second is not None:
                second.stop()


async def test_a_task_whose_record_was_flushed_from_redis_still_ends_with_results(
        rabbit_env: dict[str, str], redis_keys: aioredis.Redis, tmp_path: Path) -> None:
    prefix = rabbit_env["CACHE_PREFIX"]
    async with search_server(rabbit_env) as srv:
        client = srv.client
        chat = await new_chat(client)
        user = await join(client, chat)
        await say(client, chat, user, "an unforgettable elephant")
        task_id = await start_search(client, "elephant", user)  # queued; no consumer yet
        # Redis loses its data (every key of this service, as a FLUSHDB would; other tests' keys stay)
        await redis_keys.delete(*[key async for key in redis_keys.scan_iter(match=prefix + "*")])
        assert_error(await status(client, task_id), 404, "task-not-found")
        worker = await consumer(rabbit_env, tmp_path / "c.log")
        try:
            async def done() -> bool:  # 404 until the consumer recreated the record
                resp = await status(client, task_id, user)
                assert resp.status in (200, 404), resp
                return resp.status == 200 and resp.json == {"status": "SUCCESS"}
            await poll(done, timeout=15)
            assert "recreated from the message" in worker.log
            assert_error(await status(client, task_id, "0" * 32), 404, "task-not-found")  # owner kept
            found, _ = await read_results(client, task_id, user_id=user)
            assert [item["text"] for item in found] == ["an unforgettable elephant"]
        finally:
            worker.stop()
