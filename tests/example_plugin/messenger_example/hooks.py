"""Hooks of the example plugin: routes, a schema, a settings section, a migration and a task."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import marshmallow
from marshmallow import fields, validate

from messenger_core import BaseHandler, Migrations, Section, Setting, Task, hookimpl, number

log = logging.getLogger("messenger.example")


class ExampleSettings(Section):
    """The example's settings section (``config.example``)."""

    name = "example"
    slow_max = Setting("EXAMPLE_SLOW_MAX", number(0), 30.0, "Longest wait of /v1/example/slow, seconds")


class EchoSchema(marshmallow.Schema):
    """What /v1/example/echo takes and gives back."""

    text = fields.String(required=True, validate=validate.Length(1, 100))


class EchoHandler(BaseHandler):
    """Echo a validated body; queue a task; fail on purpose."""

    public = True

    def post(self) -> None:
        """Echo the body.
        ---
        summary: Echo
        requestBody:
          content:
            application/json:
              schema: Echo
        responses:
          200:
            description: The same body
            content:
              application/json:
                schema: Echo
        """
        self.write_json(self.load_body(EchoSchema))

    def get(self) -> None:
        """Always fails, to show the 500 shape.
        ---
        summary: Fail
        responses:
          500:
            description: internal-error
        """
        raise RuntimeError("secret-detail-that-must-not-leak")


class SlowHandler(BaseHandler):
    """Answers after a delay (graceful-shutdown tests)."""

    public = True

    async def get(self) -> None:
        """Answer after ``seconds``.
        ---
        summary: Slow answer
        responses:
          200:
            description: done
        """
        log.info("slow request started")
        seconds = min(float(self.get_query_argument("seconds", "1")), self.runtime.config.example.slow_max)
        await asyncio.sleep(seconds)
        self.write_json({"done": True})


class TaskHandler(BaseHandler):
    """Queue an example task."""

    public = True

    async def post(self) -> None:
        """Queue a task.
        ---
        summary: Queue
        responses:
          202:
            description: queued
        """
        body = self.load_body(TaskSchema)
        await self.runtime.queue.publish("example", body)
        self.write_json(body, 202)


class TaskSchema(marshmallow.Schema):
    """An example task: an id and how long to hold it (seconds)."""

    id = fields.String(required=True)
    hold = fields.Float(load_default=0.0)


async def run_example(payload: dict[str, Any], runtime: Any, attempt: int) -> None:
    """Record the start; hold ``hold`` seconds the first time only; then record the run."""
    async with runtime.db.connection() as conn:
        cur = await conn.execute("INSERT INTO example_starts (id, pid) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                                 (payload["id"], os.getpid()))
        first = cur.rowcount == 1
    if first:
        await asyncio.sleep(payload.get("hold", 0))
    async with runtime.db.connection() as conn:
        await conn.execute(
            "INSERT INTO example_runs (id, attempt, pid) VALUES (%s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (payload["id"], attempt, os.getpid()))


@hookimpl
def messenger_settings() -> type[Section]:
    """The example's section."""
    return ExampleSettings


@hookimpl
def messenger_routes() -> list[tuple[str, type]]:
    """The example's routes."""
    return [(r"/v1/example/echo", EchoHandler), (r"/v1/example/tasks", TaskHandler),
            (r"/v1/example/slow", SlowHandler)]


@hookimpl
def messenger_schemas() -> dict[str, type]:
    """Named schemas for the spec."""
    return {"Echo": EchoSchema}


@hookimpl
def messenger_migrations() -> Migrations:
    """The example's table."""
    return Migrations("messenger_example", "messenger_example.migrations")


@hookimpl
def messenger_task_handlers(config: Any) -> list[Task]:
    """One task kind, on queue names derived from the search plugin's test isolation prefix."""
    prefix = config.cache_prefix.strip(":").replace(":", "_")
    return [Task(name="example", handler=run_example, exchange=f"{prefix}_example_x",
                 routing_key=f"{prefix}_example", queue=f"{prefix}_example_q")]
