"""The ``search`` task: the same code in ``messenger-consumer`` and in the API's embedded worker.

One run: claim the task in the store (counting the run, IN_PROCESS), resolve the searcher's
chats through the chats plugin, query, store the results and SUCCESS.  The message is acked only
after the handler returned, so a consumer killed mid-task leaves it to be redelivered; a task that
keeps killing its consumer is marked FAILED once its runs exceed ``SEARCH_MAX_ATTEMPTS``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from messenger_chats import api as chats_api
from messenger_core import Backoff, Config, Task, Unavailable

from .query import search
from .settings import SearchSettings
from .state import SearchState, state_of
from .store import FINISHED

if TYPE_CHECKING:  # pragma: no cover
    from messenger_core import Runtime

log = logging.getLogger("messenger.search.task")

TASK_NAME = "search"
T = TypeVar("T")


async def _patiently(state: SearchState, call: Callable[[], Awaitable[T]]) -> T:
    """Run ``call``; in the consumer, retry while Redis or PostgreSQL is unreachable.

    The message stays unacknowledged meanwhile, so nothing is lost: the task finishes once the
    service is back, or RabbitMQ redelivers it if this consumer is stopped.  The embedded worker
    fails fast instead (its task would die with the process anyway).
    """
    backoff = Backoff(0.2, 5.0)
    while True:
        try:
            return await call()
        except Unavailable as exc:
            if not state.patient:
                raise
            if backoff.fresh:
                log.warning("search task waits: %s", exc.code)
        await asyncio.sleep(backoff.next())


def owner_of(who: dict[str, Any]) -> str:
    """The owner label a task records: ``account:<id>`` or ``member:<id>`` (from a payload)."""
    if who.get("account_id"):
        return f"account:{who['account_id']}"
    return f"member:{who['member_id']}"


async def scope(runtime: "Runtime", payload: dict[str, Any]) -> list[UUID]:
    """The chats the searching identity belongs to (the account's, or the member's)."""
    if payload.get("account_id"):
        return await chats_api.chats_of_account(runtime.db, UUID(payload["account_id"]))
    return await chats_api.member_scope(runtime.db, UUID(payload["member_id"])) or []


async def run_search(payload: dict[str, Any], runtime: "Runtime", attempt: int) -> None:
    """Run one search task (see the module docstring)."""
    state = state_of(runtime)
    task_id = payload["task_id"]
    claim = await _patiently(state, lambda: state.store.claim(task_id, owner_of(payload)))
    if claim.recreated:
        log.warning("search task %s had no record (store flushed or expired); recreated from the message", task_id)
    if claim.status in FINISHED:
        log.info("search task %s already %s (delivered again); nothing to do", task_id, claim.status)
        return
    if claim.attempts > state.settings.max_attempts:
        reason = f"gave up: {claim.attempts - 1} earlier run(s) did not finish"
        log.error("search task %s FAILED: %s", task_id, reason)
        await _patiently(state, lambda: state.store.fail(task_id, reason))
        return

    async def query() -> tuple[list[bytes], bool]:
        chats = await scope(runtime, payload)
        return await search(runtime.db, chats, payload["query"], state.settings.max_results,
                            state.settings.timeout, state.settings.max_bytes)
    results, complete = await _patiently(state, query)
    if not complete:
        log.info("search task %s stopped at the %.1fs deadline with %d results",
                 task_id, state.settings.timeout, len(results))
    await _patiently(state, lambda: state.store.finish(task_id, results))
    log.debug("search task %s: SUCCESS, %d results (run %d, delivery %d)", task_id, len(results),
              claim.attempts, attempt)


async def give_up(payload: dict[str, Any], runtime: "Runtime", attempt: int, error: BaseException) -> None:
    """The task raised on its last attempt: mark it FAILED (the reason goes to the log and the store)."""
    state = state_of(runtime)
    reason = f"failed {attempt} times, last error: {error!r}"
    log.error("search task %s FAILED: %s", payload.get("task_id"), reason)
    await _patiently(state, lambda: state.store.fail(payload["task_id"], reason))


def search_task(config: Config) -> Task:
    """The task declaration, with the exchange, routing key and queue of the settings."""
    settings: SearchSettings = config.search
    return Task(name=TASK_NAME, handler=run_search, exchange=settings.exchange,
                routing_key=settings.routing_key, queue=settings.queue,
                max_attempts=settings.max_attempts, on_give_up=give_up)
