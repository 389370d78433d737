"""A real ``messenger-api`` (entry points, every installed plugin, auth disabled) with no RabbitMQ."""

from __future__ import annotations

import re
from pathlib import Path

import redis.asyncio as aioredis

from chats_support import join, new_chat, say
from search_support import read_results, start_search, status, wait_status
from support import start_api


async def test_two_workers_share_tasks_through_redis_without_rabbitmq(
        env: dict[str, str], redis_keys: aioredis.Redis, tmp_path: Path) -> None:
    api, client = await start_api({**env, "WORKERS": "2", "CACHE_TYPE": "redis", "AUTH_DISABLED": "1",
                                   "LOG_LEVEL": "INFO", "ACCESS_LOG": "1"}, tmp_path / "api.log")
    try:
        chat = await new_chat(client)
        user = await join(client, chat)
        await say(client, chat, user, "a shared lemur")
        task_ids = [await start_search(client, "lemur", user) for _ in range(6)]
        for task_id in task_ids:
            await wait_status(client, task_id, user_id=user)
            for _ in range(4):  # new connection each time: any worker answers, every worker knows the task
                assert (await status(client, task_id)).json == {"status": "SUCCESS"}
            found, _ = await read_results(client, task_id)
            assert [item["text"] for item in found] == ["a shared lemur"]
        keys = {key async for key in redis_keys.scan_iter(match=env["CACHE_PREFIX"] + "search:task:*")}
        assert len(keys) == 6
        assert "keeps tasks in each worker's memory" not in api.log
        answering = set(re.findall(r"\[(\d+)\] messenger\.access: 200 GET /v1/chats/search/status/", api.log))
        assert len(answering) == 2, answering  # both workers answered status requests
    finally:
        assert api.stop() == 0
