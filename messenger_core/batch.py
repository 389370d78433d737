"""Group commit: writes that arrive while one is running are sent to the database together.

A ``Batcher`` wraps one *flush* function that takes a list of items and returns one result per item,
in order (say: insert these messages in one statement, one transaction, one commit).  ``submit``
hands an item over and waits for that item's result:

* nothing in flight: the item is flushed at once, alone -- an idle server adds no latency;
* ``concurrency`` flushes already in flight: the item waits with the others that arrive meanwhile,
  and the next flush takes up to ``max_size`` of them in arrival order.

Under load one database round trip and one commit then serve many requests, which is where a
write-heavy Python service spends its time.  Each caller still gets its own result or exception: a
flush that raises fails every item of that flush with the same exception; a flush that can fail for
one item alone (a constraint on one row) isolates it and returns that item's exception *instance*
in its place, which is raised to that caller only (see the chats plugin's ``ChatStore``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """Collects concurrent ``submit`` calls into calls of ``flush`` (one per process and purpose)."""

    def __init__(self, flush: Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]], max_size: int = 64,
                 concurrency: int = 1) -> None:
        if max_size < 1 or concurrency < 1:
            raise ValueError("max_size and concurrency must be at least 1")
        self._flush = flush
        self.max_size = max_size
        self.concurrency = concurrency
        self._waiting: deque[tuple[Item, asyncio.Future[Result]]] = deque()
        self._running: set[asyncio.Task[None]] = set()  # held, so no flush is garbage-collected midway
        #: flushes made and items they carried, for logs and benchmarks
        self.flushes = 0
        self.items = 0

    async def submit(self, item: Item) -> Result:
        """Hand ``item`` to the next flush; its result (or the flush's exception)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if len(self._running) < self.concurrency:
            self._start()
        return await future

    def _start(self) -> None:
        task = asyncio.ensure_future(self._run())
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self) -> None:
        try:
            await self._drain()
        finally:
            # at once, not in the done callback: a caller woken by this flush's last result runs before that
            # callback, and an item it submits must see this flush gone, or nothing would ever flush it
            self._running.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _drain(self) -> None:
        while self._waiting:
            size = min(self.max_size, len(self._waiting))
            batch = [self._waiting.popleft() for _ in range(size)]
            self.flushes += 1
            self.items += size
            try:
                results: list[Result | BaseException] = list(await self._flush([item for item, _ in batch]))
                if len(results) != len(batch):
                    raise RuntimeError(f"flush returned {len(results)} result(s) for {len(batch)} item(s)")
            except asyncio.CancelledError:
                for _, future in (*batch, *self._waiting):
                    future.cancel()
                self._waiting.clear()
                raise
            except Exception as exc:  # pylint: disable=broad-exception-caught  # handed to every caller
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results):
                if future.done():  # a caller that was cancelled no longer waits
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
