"""Hook implementations of ``messenger_search`` (see messenger_core.hookspecs)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from messenger_core import Config, Migrations, Task, hookimpl

from . import handlers, schemas, tsconfig
from .settings import SearchSettings
from .store import MemoryStore, RedisStore, SearchStore
from .errors import COMPONENTS
from .state import KEY, SearchState
from .tasks import search_task

if TYPE_CHECKING:  # pragma: no cover
    from messenger_core import Runtime

log = logging.getLogger("messenger.search")


@hookimpl
def messenger_settings() -> type[SearchSettings]:
    """The ``search`` settings section."""
    return SearchSettings


@hookimpl
def messenger_routes() -> list[Any]:
    """The three search endpoints."""
    return handlers.default_handlers


@hookimpl
def messenger_schemas() -> dict[str, Any]:
    """Named schemas of the search endpoints."""
    return schemas.SCHEMAS


@hookimpl
def messenger_openapi_components() -> dict[str, Any]:
    """The ``TaskId`` path parameter and the ``TaskNotFound`` response."""
    return COMPONENTS


@hookimpl
def messenger_migrations() -> Migrations:
    """The text-search configuration and the GiST index on messages (after the chats tables)."""
    return Migrations("messenger_search", "messenger_search.migrations", after=("messenger_chats",))


@hookimpl
def messenger_task_handlers(config: Config) -> list[Task]:
    """The ``search`` task (consumer or embedded worker)."""
    return [search_task(config)]


@hookimpl
def messenger_startup(runtime: "Runtime") -> None:
    """Pick the store (Redis with RabbitMQ or several Redis-backed workers, else memory); sync the stemming."""
    config = runtime.config
    settings: SearchSettings = config.search
    store: SearchStore
    if config.rmq_url or (runtime.processes > 1 and config.cache_type == "redis"):
        # several API workers must all see every task: Redis is shared
        store = RedisStore(runtime.redis, config.cache_prefix, settings.task_ttl)
    else:
        store = MemoryStore(settings.task_ttl)
        if runtime.processes > 1:
            log.warning("search without RMQ_URL keeps tasks in each worker's memory: with %d workers a "
                        "client may ask another worker about its task; use WORKERS=1, CACHE_TYPE=redis "
                        "or RMQ_URL", runtime.processes)
    state = SearchState(store=store, settings=settings, patient=runtime.role == "consumer")
    state.background = asyncio.get_running_loop().create_task(
        tsconfig.sync_when_migrated(runtime.migrated, runtime.db, settings.ts_config))
    state.background.add_done_callback(_check_ended)
    runtime.state[KEY] = state


def _check_ended(task: "asyncio.Task[None]") -> None:
    """Retrieve the stemming check's outcome: the check logs what it expects itself; anything else is a bug,
    logged here once, with its traceback."""
    if not task.cancelled() and task.exception() is not None:
        log.error("the text-search configuration check failed", exc_info=task.exception())


@hookimpl
async def messenger_shutdown(runtime: "Runtime") -> None:
    """Stop the background stemming check if it still runs."""
    state: SearchState | None = runtime.state.get(KEY)
    if state is not None and state.background is not None:
        state.background.cancel()  # no-op once it ended
        await asyncio.gather(state.background, return_exceptions=True)
