"""Task queue: RabbitMQ through pika, or an embedded in-process worker when ``RMQ_URL`` is empty.

Plugins declare :class:`Task` objects (``messenger_task_handlers``) and publish with
``await runtime.queue.publish("name", payload)``.  With RabbitMQ the publish returns only after
the broker confirmed the persistent message; ``messenger-consumer`` (:func:`run_consumer`) then
runs the handler and acknowledges only after it finished, so a crash means redelivery.  Without
RabbitMQ the same handlers run on asyncio tasks inside the API process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import logging
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions

from . import instruments
from .aio import Backoff
from .errors import ServiceUnavailable, StartupError
from .health import Availability
from .logs import REQUEST_ID, current_request_id

if TYPE_CHECKING:  # pragma: no cover
    from .runtime import Runtime

log = logging.getLogger("messenger.broker")

TaskHandler = Callable[..., Awaitable[None]]
GiveUpHandler = Callable[..., Awaitable[None]]
ATTEMPT_HEADER = "x-attempt"


#: A failed task's first retry delay and the longest one (seconds): 0.5, 1, 2, 4, then 5.
TASK_RETRY_FIRST = 0.5
TASK_RETRY_CAP = 5.0


def retry_delay(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1``: the core's :class:`~messenger_core.aio.Backoff`
    after ``attempt`` failures (the attempt number travels with the task, so no state is kept)."""
    return Backoff(TASK_RETRY_FIRST, TASK_RETRY_CAP).after(attempt)


@dataclass(frozen=True)
class Task:
    """A kind of queued work: its name, the coroutine that runs it and where it travels.

    ``handler(payload=dict, runtime=Runtime, attempt=int)`` runs one task; ``on_give_up`` (same
    arguments plus ``error``) is awaited when the handler raised on its last attempt.
    """

    name: str
    handler: TaskHandler
    exchange: str
    routing_key: str
    queue: str
    max_attempts: int = 3
    on_give_up: GiveUpHandler | None = None


async def run_task(task: Task, payload: dict[str, Any], runtime: "Runtime", attempt: int) -> bool:
    """Run one task; True when it finished or was given up (ack it), False to retry it."""
    started = time.monotonic()
    try:
        await task.handler(payload=payload, runtime=runtime, attempt=attempt)
        _count(task, "done", started)
        log.info("task %s done in %.1fms (attempt %d)", task.name, 1000.0 * (time.monotonic() - started), attempt)
        return True
    except Exception as exc:  # pylint: disable=broad-exception-caught
        if attempt < task.max_attempts:
            _count(task, "retry", started)
            log.warning("task %s attempt %d failed, will retry: %r", task.name, attempt, exc)
            return False
        _count(task, "failed", started)
        log.exception("task %s failed after %d attempts", task.name, attempt)
        if task.on_give_up is not None:
            try:
                await task.on_give_up(payload=payload, runtime=runtime, attempt=attempt, error=exc)
            except Exception:  # pylint: disable=broad-exception-caught
                log.exception("task %s: on_give_up failed", task.name)
        return True


def _count(task: Task, outcome: str, started: float) -> None:
    instruments.TASKS.labels(task.name, outcome).inc()
    instruments.TASK_DURATION.labels(task.name, outcome).observe(time.monotonic() - started)


class TaskQueue(ABC):
    """Where ``publish`` sends tasks."""

    def __init__(self, tasks: dict[str, Task]) -> None:
        self.tasks = tasks

    def task(self, name: str) -> Task:
        """The declared task of that name."""
        try:
            return self.tasks[name]
        except KeyError:
            raise StartupError(f"no enabled plugin declares task {name!r}") from None

    @abstractmethod
    async def publish(self, name: str, payload: dict[str, Any]) -> None:
        """Queue a task; returns once it is safely accepted, else raises ``ServiceUnavailable`` (503)."""

    async def start(self, runtime: "Runtime") -> None:
        """Start background work (the embedded worker)."""

    async def close(self) -> None:
        """Stop background work, close connections."""


class EmbeddedQueue(TaskQueue):
    """In-process worker: the same task handlers on ``workers`` asyncio tasks."""

    def __init__(self, tasks: dict[str, Task], workers: int) -> None:
        super().__init__(tasks)
        self.workers = workers
        self._queue: asyncio.Queue[tuple[Task, dict[str, Any], int, str | None]] = asyncio.Queue()
        self._runners: list[asyncio.Task[None]] = []
        self._runtime: Runtime | None = None

    async def publish(self, name: str, payload: dict[str, Any]) -> None:
        self._queue.put_nowait((self.task(name), payload, 1, current_request_id()))

    async def start(self, runtime: "Runtime") -> None:
        self._runtime = runtime
        self._runners = [asyncio.create_task(self._run()) for _ in range(self.workers)]

    async def _run(self) -> None:
        assert self._runtime is not None
        while True:
            task, payload, attempt, request_id = await self._queue.get()
            REQUEST_ID.set(request_id)  # the lines of the task name the request that queued it
            try:
                if not await run_task(task, payload, self._runtime, attempt):
                    asyncio.get_running_loop().call_later(
                        retry_delay(attempt), self._queue.put_nowait, (task, payload, attempt + 1, request_id))
            finally:
                self._queue.task_done()

    async def close(self) -> None:
        for runner in self._runners:
            runner.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)


def connection_parameters(url: str) -> pika.URLParameters:
    """pika parameters with short timeouts, so an outage answers fast instead of hanging."""
    params = pika.URLParameters(url)
    params.socket_timeout = 2.0
    params.stack_timeout = 3.0
    params.blocked_connection_timeout = 5.0
    params.connection_attempts = 1
    return params


def declare(channel: Any, task: Task) -> None:
    """Durable exchange and queue, bound by the task's routing key (idempotent)."""
    channel.exchange_declare(exchange=task.exchange, exchange_type="direct", durable=True)
    channel.queue_declare(queue=task.queue, durable=True)
    channel.queue_bind(queue=task.queue, exchange=task.exchange, routing_key=task.routing_key)


def encode(name: str, payload: dict[str, Any], request_id: str | None = None) -> bytes:
    """The wire form of a task message (with the id of the request that queued it, if any)."""
    message: dict[str, Any] = {"task": name, "payload": payload}
    if request_id:
        message["request_id"] = request_id
    return json.dumps(message, separators=(",", ":")).encode()


class RabbitQueue(TaskQueue):
    """Publisher for the API process: a blocking pika connection owned by one thread.

    Each publish waits for the broker's confirm of a persistent, mandatory message.  A broken
    connection is replaced once per publish; if RabbitMQ still cannot take the message the caller
    gets ``ServiceUnavailable`` (503) and nothing was accepted.
    """

    def __init__(self, tasks: dict[str, Task], url: str) -> None:
        super().__init__(tasks)
        self.params = connection_parameters(url)
        self.params.heartbeat = 0  # the thread is idle between publishes; a dead link is replaced
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rabbit-publisher")
        self._connection: Any = None
        self._channel: Any = None
        self.health = Availability("rabbitmq", log)

    def _connect(self) -> None:
        self._close()
        self._connection = pika.BlockingConnection(self.params)
        channel = self._connection.channel()
        channel.confirm_delivery()
        for task in self.tasks.values():
            declare(channel, task)
        self._channel = channel

    def _close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except pika.exceptions.AMQPError:
                pass

    def _publish_blocking(self, task: Task, body: bytes) -> None:
        for attempt in (1, 2):
            try:
                if self._channel is None or not self._channel.is_open:
                    self._connect()
                self._channel.basic_publish(
                    exchange=task.exchange, routing_key=task.routing_key, body=body, mandatory=True,
                    properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent,
                                                    content_type="application/json",
                                                    headers={ATTEMPT_HEADER: 1}))
                return
            except (pika.exceptions.AMQPError, OSError) as exc:
                self._close()
                if attempt == 2:
                    raise
                log.info("rabbitmq publish retry after: %r", exc)

    async def publish(self, name: str, payload: dict[str, Any]) -> None:
        task = self.task(name)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._publish_blocking, task,
                                       encode(name, payload, current_request_id()))
        except (pika.exceptions.AMQPError, OSError) as exc:
            self.health.failed(exc)
            raise ServiceUnavailable(str(exc)) from exc
        self.health.succeeded()

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)


def make_queue(url: str, tasks: dict[str, Task], embedded_workers: int) -> TaskQueue:
    """RabbitMQ when a URL is set, else the embedded worker."""
    if url:
        return RabbitQueue(tasks, url)
    return EmbeddedQueue(tasks, embedded_workers)


# ---- the consumer process ---------------------------------------------------------------------

class Consumer:
    """``messenger-consumer``: takes tasks from RabbitMQ, runs them, acks when they are done.

    Two threads.  The main one owns the pika connection and never blocks on a task: it dispatches
    deliveries, sends and checks AMQP heartbeats, and acks.  The handlers run on the runtime's
    asyncio loop (where its pools live) in a thread of its own, up to ``prefetch`` at once; a
    finished task hands its ack back to the connection's thread (``add_callback_threadsafe``).  So
    a task that waits out a long outage keeps the connection alive, and RabbitMQ does not
    redeliver it behind its back.  Reconnects on the core's :class:`~messenger_core.aio.Backoff`.
    SIGTERM stops taking tasks, lets the tasks in hand finish and be acked, then exits.
    """

    def __init__(self, runtime: "Runtime", loop: asyncio.AbstractEventLoop, url: str, prefetch: int) -> None:
        self.runtime = runtime
        self.loop = loop
        self.tasks = runtime.tasks
        self.params = connection_parameters(url)
        self.prefetch = prefetch
        self.stopping = False
        self.backoff = Backoff(0.5, 10.0)
        self._running: set[concurrent.futures.Future[bool]] = set()  # tasks on the loop, any connection
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        by_queue: dict[str, Task] = {}
        for task in self.tasks.values():
            if task.queue in by_queue:
                raise StartupError(f"tasks {by_queue[task.queue].name!r} and {task.name!r} share queue {task.queue!r}")
            by_queue[task.queue] = task
        self.by_queue = by_queue

    def stop(self, *_: Any) -> None:
        """Signal handler: finish the tasks in hand, then leave."""
        log.info("consumer stopping")
        self.stopping = True

    def _wait_for_migrations(self) -> None:
        """Take no task before this process has seen the schema migrated."""
        log.info("consumer waits for the database migrations")
        while not self.stopping and not self.runtime.migrated.is_set():
            self.loop.run_until_complete(asyncio.sleep(0.1))

    async def _execute(self, task: Task, payload: dict[str, Any], attempt: int, request_id: str | None) -> bool:
        """Run one task on the loop; True to ack it, False to queue it again (after the retry delay)."""
        REQUEST_ID.set(request_id)  # the lines of the task name the request that queued it
        done = await run_task(task, payload, self.runtime, attempt)
        if not done:
            await asyncio.sleep(retry_delay(attempt))
        return done

    def _on_message(self, connection: Any, inflight: set[int], channel: Any, method: Any, properties: Any,
                    body: bytes) -> None:
        """A delivery (connection thread): start its task on the loop; the ack comes when it is done."""
        tag = method.delivery_tag
        try:
            message = json.loads(body)
            task = self.tasks[message["task"]]
            payload = message["payload"]
        except (ValueError, KeyError, TypeError):
            log.error("dropping malformed task message on %s: %r", method.routing_key, body[:200])
            channel.basic_ack(delivery_tag=tag)
            return
        if self.stopping:
            channel.basic_nack(delivery_tag=tag, requeue=True)  # for another consumer
            return
        attempt = int((properties.headers or {}).get(ATTEMPT_HEADER, 1))
        request_id = message.get("request_id")
        request_id = request_id if isinstance(request_id, str) else None
        if method.redelivered:
            log.info("task %s redelivered (a consumer stopped while running it)", task.name)
        inflight.add(tag)
        future = asyncio.run_coroutine_threadsafe(self._execute(task, payload, attempt, request_id), self.loop)
        self._running.add(future)

        def settle() -> None:  # on the connection's thread
            inflight.discard(tag)
            if future.cancelled() or future.exception() is not None:
                log.error("task %s crashed the consumer's loop: %r; left to be redelivered", task.name,
                          None if future.cancelled() else future.exception())
                return
            if not future.result():
                channel.basic_publish(
                    exchange=task.exchange, routing_key=task.routing_key, body=body,
                    properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent,
                                                    content_type="application/json",
                                                    headers={ATTEMPT_HEADER: attempt + 1}))
            channel.basic_ack(delivery_tag=tag)

        def finished(_: concurrent.futures.Future[bool]) -> None:  # on the loop's thread
            self._running.discard(future)
            try:
                connection.add_callback_threadsafe(settle)
            except (pika.exceptions.AMQPError, RuntimeError) as exc:
                log.warning("task %s finished after its connection was lost (%r): RabbitMQ redelivers it",
                            task.name, exc)
        future.add_done_callback(finished)

    def _serve_once(self) -> None:
        connection = pika.BlockingConnection(self.params)
        inflight: set[int] = set()  # delivery tags of this connection's tasks not yet acked
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=self.prefetch)
            tags = []
            for task in self.tasks.values():
                declare(channel, task)
                tags.append(channel.basic_consume(
                    queue=task.queue,
                    on_message_callback=functools.partial(self._on_message, connection, inflight)))
            log.info("consumer ready: %s", ", ".join(sorted(self.by_queue)))
            self.backoff.reset()
            while not self.stopping or inflight:
                if self.stopping and tags:
                    for tag in tags:  # take no more; the tasks in hand finish and are acked
                        channel.basic_cancel(tag)
                    tags = []
                connection.process_data_events(time_limit=0.2)  # deliveries, acks, heartbeats
        finally:
            if connection.is_open:
                connection.close()

    def _settle_running(self) -> None:
        """Wait for the tasks of a lost connection: their redelivered copies must not run beside them."""
        while self._running:
            time.sleep(0.1)

    def run(self) -> None:
        """Consume until SIGTERM/SIGINT; reconnect with backoff on broker errors."""
        self._wait_for_migrations()
        if not self.tasks:
            log.warning("no enabled plugin declares tasks; the consumer has nothing to do")
        runner = threading.Thread(target=self.loop.run_forever, name="consumer-tasks", daemon=True)
        runner.start()
        try:
            while not self.stopping:
                try:
                    self._serve_once()
                except (pika.exceptions.AMQPError, OSError) as exc:
                    delay = self.backoff.next()
                    log.warning("rabbitmq connection lost (%r); retrying in %.1fs", exc, delay)
                    self._settle_running()
                    deadline = time.monotonic() + delay
                    while not self.stopping and time.monotonic() < deadline:
                        time.sleep(0.1)
            self._settle_running()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            runner.join()
