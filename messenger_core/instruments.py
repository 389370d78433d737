"""The core's own metrics: HTTP requests, the database pool, cache look-ups, queued tasks.

Label values are bounded: a route is its pattern (``/v1/chats/{chat_id}/messages``), never the
raw path; a cache group is its name with the ids taken out (``chats:tail``, ``auth:session``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from typing import TYPE_CHECKING, Any

from . import metrics

if TYPE_CHECKING:  # pragma: no cover
    from .runtime import Runtime

log = logging.getLogger("messenger.metrics")

HTTP_REQUESTS = metrics.counter("messenger_http_requests",
                                "HTTP requests answered, by method, route pattern and status",
                                ["method", "route", "status"])
HTTP_LATENCY = metrics.histogram("messenger_http_request_duration_seconds",
                                 "Seconds from reading a request to finishing its response, by route pattern",
                                 ["route"])
DB_POOL_SIZE = metrics.gauge("messenger_db_pool_connections", "PostgreSQL connections open in the pools")
DB_POOL_IN_USE = metrics.gauge("messenger_db_pool_connections_in_use",
                               "PostgreSQL connections taken from the pools right now")
DB_POOL_WAITING = metrics.gauge("messenger_db_pool_requests_waiting",
                                "Callers waiting for a pooled PostgreSQL connection right now")
CACHE_HITS = metrics.counter("messenger_cache_hits", "Cache look-ups that found a value, by cache and group",
                             ["cache", "group"])
CACHE_MISSES = metrics.counter("messenger_cache_misses", "Cache look-ups that found nothing, by cache and group",
                               ["cache", "group"])
TASKS = metrics.counter("messenger_tasks", "Queued tasks run, by task and outcome (done, retry, failed)",
                        ["task", "outcome"])
TASK_DURATION = metrics.histogram("messenger_task_duration_seconds", "Seconds one run of a queued task took",
                                  ["task", "outcome"])

METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"))
UNMATCHED = "unmatched"  # the route label of a request no route matched
_GROUP = re.compile(r"\(\?P<([A-Za-z_][A-Za-z0-9_]*)>[^)]*\)")
_HEXISH = "0123456789abcdefABCDEF-"
SAMPLE_INTERVAL = 1.0
_MAX_REQUEST_CHILDREN = 4096


def route_label(pattern: str) -> str:
    """``/v1/chats/(?P<chat_id>[^/]+)/users`` -> ``/v1/chats/{chat_id}/users`` (as in the OpenAPI paths)."""
    label = _GROUP.sub(lambda m: "{" + m.group(1) + "}", pattern)
    return label.removesuffix("$")


def method_label(method: str) -> str:
    """The method, or ``other`` for one outside the standard set (clients choose it freely)."""
    return method if method in METHODS else "other"


_REQUEST_CHILDREN: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def count_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency (called for every request: one dict look-up finds
    both metric children for its method, route and status)."""
    children = _REQUEST_CHILDREN.get((method, route, status))
    if children is None:
        children = (HTTP_REQUESTS.labels(method_label(method), route, str(status)), HTTP_LATENCY.labels(route))
        if len(_REQUEST_CHILDREN) < _MAX_REQUEST_CHILDREN:  # methods are the client's choice: bounded
            _REQUEST_CHILDREN[(method, route, status)] = children
    children[0].inc()
    children[1].observe(seconds)


def _is_id(part: str) -> bool:
    """A number, or 8+ hex digits and dashes (a hex id, a UUID): what a label must not carry."""
    return part.isdigit() or (len(part) >= 8 and not part.strip(_HEXISH))


@functools.lru_cache(maxsize=4096)  # hot keys (a busy chat's tail, a session) repeat
def group_label(key: str) -> str:
    """A cache key or group without its ids: ``chats:<hex>:page:0:10`` -> ``chats:page``."""
    parts = [part for part in key.split(":") if part and not _is_id(part)]
    return ":".join(parts[:3]) or "other"


def cache_lookup(cache: str, key: str, hit: bool) -> None:
    """Count one look-up of ``key`` in ``cache`` (memory, redis or near)."""
    (CACHE_HITS if hit else CACHE_MISSES).labels(cache, group_label(key)).inc()


def sample_pool(runtime: "Runtime") -> None:
    """Set this process's pool gauges from psycopg_pool's statistics."""
    db = runtime.db
    stats = db.pool.get_stats() if db.ready else {}
    size = stats.get("pool_size", 0)
    DB_POOL_SIZE.set(size)
    DB_POOL_IN_USE.set(max(0, size - stats.get("pool_available", 0)))
    DB_POOL_WAITING.set(stats.get("requests_waiting", 0))


async def sample_forever(runtime: "Runtime", interval: float = SAMPLE_INTERVAL) -> None:
    """Keep this process's gauges current (a scrape reads every worker's last sample)."""
    while True:
        try:
            sample_pool(runtime)
        except Exception:  # pylint: disable=broad-exception-caught
            log.exception("sampling the pool failed")
        await asyncio.sleep(interval)
