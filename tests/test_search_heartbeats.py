"""The consumer keeps its AMQP connection serviced while a task runs: a task that waits out a PostgreSQL
outage longer than a few heartbeat intervals is not redelivered behind its back, and ends SUCCESS after
exactly one run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis

from chats_support import join, new_chat, say
from search_support import consumer, read_results, search_server, start_search, status, wait_status
from search_support import rabbit_env_fixture  # noqa: F401  pylint: disable=unused-import
from support import TcpProxy, poll

HEARTBEAT = 2  # seconds: RabbitMQ closes a connection that stays silent for about two of them


async def test_a_task_outlasting_several_heartbeats_runs_once_and_keeps_the_connection(
        rabbit_env: dict[str, str], redis_keys: aioredis.Redis, tmp_path: Path) -> None:
    proxy = TcpProxy(5432)
    one_run = {"SEARCH_MAX_ATTEMPTS": "1"}  # a redelivery would be a second run, and FAILED
    consumer_env = {**rabbit_env, "RMQ_URL": f"{rabbit_env['RMQ_URL']}?heartbeat={HEARTBEAT}", **one_run}
    try:
        async with search_server(rabbit_env, **one_run) as srv:  # the API reaches PostgreSQL directly
            client = srv.client
            chat = await new_chat(client)
            user = await join(client, chat)
            await say(client, chat, user, "a steadfast ibex")
            first = await consumer({**consumer_env, "POSTGRES_HOSTS": f"127.0.0.1:{proxy.port}"},
                                   tmp_path / "first.log")
            second = None
            try:
                proxy.cut()
                task_id = await start_search(client, "ibex", user)

                async def waiting() -> bool:
                    return "search task waits: database-unavailable" in first.log
                await poll(waiting, timeout=15)
                # a second consumer would get the task if RabbitMQ gave up on the first one
                second = await consumer(consumer_env, tmp_path / "second.log")
                await asyncio.sleep(4 * HEARTBEAT)  # the outage lasts several heartbeat intervals
                assert (await status(client, task_id)).json == {"status": "IN_PROCESS"}
                proxy.restore()
                await wait_status(client, task_id, user_id=user)
                found, _ = await read_results(client, task_id)
                assert [item["text"] for item in found] == ["a steadfast ibex"]
                key = f"{rabbit_env['CACHE_PREFIX']}search:task:{task_id}"
                assert await redis_keys.hget(key, "attempts") == b"1"  # exactly one run
                assert "rabbitmq connection lost" not in first.log, first.log
                assert "redelivered" not in first.log + second.log
                assert task_id not in second.log
            finally:
                first.stop()
                if second is not None:
                    second.stop()
    finally:
        proxy.close()
