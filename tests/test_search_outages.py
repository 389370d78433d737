"""Redis or RabbitMQ unreachable: search answers 503 service-unavailable fast, chats keep working."""

from __future__ import annotations

import time
from pathlib import Path

import redis.asyncio as aioredis

from chats_support import join, new_chat, read_all, say
from search_support import (consumer, read_results, results, search_server, search_texts, start_search, status,
                            wait_status)
from search_support import rabbit_env_fixture  # noqa: F401  pylint: disable=unused-import
from support import TcpProxy, assert_error, poll


async def task_keys(client: aioredis.Redis, prefix: str) -> set[bytes]:
    """This test's search task keys in Redis."""
    return {key async for key in client.scan_iter(match=prefix + "search:task:*")}


async def test_redis_cut_answers_503_then_recovers_with_the_task_intact(
        rabbit_env: dict[str, str], redis_keys: aioredis.Redis, tmp_path: Path) -> None:
    proxy = TcpProxy(6379)
    api_env = {**rabbit_env, "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"}
    worker = await consumer(rabbit_env, tmp_path / "consumer.log")
    try:
        async with search_server(api_env) as srv:
            client = srv.client
            chat = await new_chat(client)
            user = await join(client, chat)
            await say(client, chat, user, "the resilient capybara")
            task_id = await start_search(client, "capybara", user)
            await wait_status(client, task_id, user_id=user)

            proxy.cut()
            started = time.monotonic()
            resp = await client.post(f"/v1/chats/search?user_id={user}", {"message": "capybara"})
            assert_error(resp, 503, "service-unavailable")
            assert_error(await status(client, task_id), 503, "service-unavailable")
            assert_error(await results(client, task_id, limit=5), 503, "service-unavailable")
            assert time.monotonic() - started < 6
            # chats do not need Redis (memory cache here)
            await say(client, chat, user, "chats still work")
            assert [m["text"] for m in await read_all(client, chat)] == ["the resilient capybara", "chats still work"]
            assert len(await task_keys(redis_keys, rabbit_env["CACHE_PREFIX"])) == 1  # the refused POST left nothing

            proxy.restore()
            assert (await status(client, task_id)).json == {"status": "SUCCESS"}
            found, _ = await read_results(client, task_id, limit=5)
            assert [item["text"] for item in found] == ["the resilient capybara"]
            assert await search_texts(client, "capybara", user) == ["the resilient capybara"]
    finally:
        worker.stop()
        proxy.close()


async def test_rabbitmq_cut_answers_503_and_stores_no_task(
        rabbit_env: dict[str, str], redis_keys: aioredis.Redis, tmp_path: Path) -> None:
    proxy = TcpProxy(5672)
    api_env = {**rabbit_env, "RMQ_URL": f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"}
    prefix = rabbit_env["CACHE_PREFIX"]
    worker = await consumer(rabbit_env, tmp_path / "consumer.log")  # its own link to RabbitMQ stays up
    try:
        async with search_server(api_env) as srv:
            client = srv.client
            chat = await new_chat(client)
            user = await join(client, chat)
            await say(client, chat, user, "an unhurried tortoise")
            assert await search_texts(client, "tortoise", user) == ["an unhurried tortoise"]
            before = await task_keys(redis_keys, prefix)

            proxy.cut()
            started = time.monotonic()
            resp = await client.post(f"/v1/chats/search?user_id={user}", {"message": "tortoise"})
            assert_error(resp, 503, "service-unavailable")
            assert time.monotonic() - started < 8
            assert await task_keys(redis_keys, prefix) == before  # nothing half-accepted
            await say(client, chat, user, "chats do not need RabbitMQ")

            proxy.restore()
            assert await search_texts(client, "tortoise", user) == ["an unhurried tortoise"]
    finally:
        worker.stop()
        proxy.close()


async def test_postgres_cut_under_the_consumer_delays_the_task_without_losing_it(
        rabbit_env: dict[str, str], redis_keys: aioredis.Redis, tmp_path: Path) -> None:
    # pylint: disable=unused-argument  # redis_keys: removes this test's keys afterwards
    proxy = TcpProxy(5432)
    worker = await consumer({**rabbit_env, "POSTGRES_HOSTS": f"127.0.0.1:{proxy.port}"}, tmp_path / "consumer.log")
    try:
        async with search_server(rabbit_env) as srv:  # the API reaches PostgreSQL directly
            client = srv.client
            chat = await new_chat(client)
            user = await join(client, chat)
            await say(client, chat, user, "a patient heron")
            proxy.cut()
            task_id = await start_search(client, "heron", user)

            async def waiting() -> bool:
                return "search task waits: database-unavailable" in worker.log
            await poll(waiting, timeout=15)
            assert (await status(client, task_id)).json == {"status": "IN_PROCESS"}
            proxy.restore()
            await wait_status(client, task_id, user_id=user)
            found, _ = await read_results(client, task_id)
            assert [item["text"] for item in found] == ["a patient heron"]
    finally:
        worker.stop()
        proxy.close()
