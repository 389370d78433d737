"""Tasks: the embedded worker, and RabbitMQ with a real messenger-consumer process (crash included)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import psycopg
import pytest

from example_helpers import example_plugin
from support import RMQ_URL, TcpProxy, conninfo, delete_rabbit_queue, poll, serve_app, start_consumer


def _runs(database: str) -> dict[str, tuple[int, int]]:
    with psycopg.connect(conninfo(database)) as conn:
        rows = conn.execute("SELECT id, attempt, pid FROM example_runs").fetchall()
    return {row[0]: (row[1], row[2]) for row in rows}


def _ready_messages(queue: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(RMQ_URL))
    try:
        return conn.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        conn.close()


async def test_embedded_worker_runs_tasks_in_the_api_process(env: dict[str, str], database: str) -> None:
    async with serve_app(env, plugins=(), extra=example_plugin()) as srv:
        resp = await srv.client.post("/v1/example/tasks", {"id": "embedded-1"})
        assert resp.status == 202

        async def ran() -> Any:
            return _runs(database).get("embedded-1")
        attempt, pid = await poll(ran, timeout=10)
        assert attempt == 1 and pid == os.getpid()


@pytest.fixture
def rabbit_env(env: dict[str, str]) -> Iterator[dict[str, str]]:
    prefix = env["CACHE_PREFIX"].strip(":").replace(":", "_")
    yield {**env, "RMQ_URL": RMQ_URL, "MESSENGER_APPS": "messenger_example", "LOG_LEVEL": "INFO"}
    delete_rabbit_queue(f"{prefix}_example_q", f"{prefix}_example_x")


async def test_consumer_runs_a_published_task_and_a_killed_one_is_redelivered(
        example_bin: Path, rabbit_env: dict[str, str], database: str, tmp_path: Path) -> None:
    queue = rabbit_env["CACHE_PREFIX"].strip(":").replace(":", "_") + "_example_q"
    async with serve_app(rabbit_env, plugins=(), extra=example_plugin()) as srv:
        first = start_consumer(rabbit_env, tmp_path / "consumer1.log", example_bin)
        try:
            assert (await srv.client.post("/v1/example/tasks", {"id": "plain"})).status == 202

            async def plain_ran() -> Any:
                return _runs(database).get("plain")
            attempt, pid = await poll(plain_ran, timeout=20)
            assert attempt == 1 and pid == first.proc.pid

            # a task the consumer holds for a long time: kill the consumer while it runs
            assert (await srv.client.post("/v1/example/tasks", {"id": "held", "hold": 60})).status == 202

            async def taken() -> bool:
                return _ready_messages(queue) == 0
            await poll(taken, timeout=10)
            first.kill()
        finally:
            first.stop()
        assert "held" not in _runs(database)
        second = start_consumer(rabbit_env, tmp_path / "consumer2.log", example_bin)
        try:
            async def held_ran() -> Any:
                return _runs(database).get("held")
            _, pid = await poll(held_ran, timeout=30)
            assert pid == second.proc.pid  # the second consumer got the task again
        finally:
            assert second.stop() == 0
        assert "redelivered" in second.log


async def test_consumer_reconnects_after_losing_rabbitmq(
        example_bin: Path, rabbit_env: dict[str, str], database: str, tmp_path: Path) -> None:
    proxy = TcpProxy(5672)
    consumer_env = {**rabbit_env, "RMQ_URL": f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"}
    consumer = start_consumer(consumer_env, tmp_path / "consumer.log", example_bin)
    try:
        async def ready() -> bool:
            return "consumer ready" in consumer.log
        await poll(ready, timeout=20)
        proxy.cut()

        async def lost() -> bool:
            return "rabbitmq connection lost" in consumer.log
        await poll(lost, timeout=10)
        async with serve_app(rabbit_env, plugins=(), extra=example_plugin()) as srv:  # publishes directly
            assert (await srv.client.post("/v1/example/tasks", {"id": "after-outage"})).status == 202
            proxy.restore()

            async def ran() -> Any:
                return _runs(database).get("after-outage")
            _, pid = await poll(ran, timeout=30)
        assert pid == consumer.proc.pid  # the same process, reconnected
        assert consumer.log.count("consumer ready") >= 2
    finally:
        assert consumer.stop() == 0
        proxy.close()
