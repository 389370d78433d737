"""Small asyncio helpers of the core: the event loop of a process, awaiting hook results, a bounded
shutdown step, one capped exponential backoff."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .errors import StartupError


def event_loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes a new event loop of ``EVENT_LOOP``'s kind: ``uvloop`` (libuv) or ``asyncio`` (the
    standard library's); ``StartupError`` when uvloop is chosen and not installed.

    Tornado, psycopg, redis.asyncio and the core run on either.  uvloop does the loop's own work
    (readiness, timers, callbacks) in C: a held long-poll's answer, one HTTP round trip, costs about a
    fifth less CPU on it (bench/README.md, "The event loop: uvloop by default").
    """
    if kind == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop  # pylint: disable=import-outside-toplevel  # only when chosen
    except ImportError:
        raise StartupError("EVENT_LOOP=uvloop but uvloop is not installed: pip install uvloop, "
                           "or set EVENT_LOOP=asyncio") from None
    return uvloop.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """The loop's kind as ``EVENT_LOOP`` names it (``uvloop``, ``asyncio``), from its class, for the logs."""
    return type(loop).__module__.split(".", 1)[0]


async def resolve(value: Any) -> Any:
    """A hookimpl's result, awaited when the hookimpl was ``async def``."""
    return await value if inspect.isawaitable(value) else value


async def gather(results: Iterable[Any]) -> list[Any]:
    """Resolve every result of a hook call, in order."""
    return [await resolve(value) for value in results]


async def bounded(name: str, awaitable: Awaitable[Any], timeout: float, logger: logging.Logger) -> bool:
    """Await ``awaitable`` for at most ``timeout`` seconds; True when it finished in time.

    A shutdown step that overruns (a peer that never answers, a loop that swallowed its cancel) is
    cancelled and left behind with a warning naming it, so that one stuck closer cannot keep the
    process from exiting.  Unlike ``asyncio.wait_for`` this does not wait for the cancel to take.
    """
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        logger.warning("shutdown: %s did not finish within %.1fs; going on without it", name, timeout)
        return False
    if not task.cancelled() and task.exception() is not None:
        logger.error("shutdown: %s failed", name, exc_info=task.exception())
    return True


class Backoff:
    """Delays for retrying a call that failed: ``first``, then doubled each time, at most ``cap``.

    ``next()`` is the delay before the next try; ``reset()`` after a success starts over.  The one
    retry schedule of every reconnect loop (migrations, the LISTEN connection, the near cache's
    subscription, the consumer's broker connection, a task waiting out an outage) and, through
    ``after()``, of a failed task's next attempt (``messenger_core.broker.retry_delay``).
    """

    def __init__(self, first: float, cap: float, factor: float = 2.0) -> None:
        self.first = first
        self.cap = cap
        self.factor = factor
        self._next = first

    @property
    def fresh(self) -> bool:
        """True while no delay was handed out since the start or the last reset."""
        return self._next == self.first

    def next(self) -> float:
        """The delay to wait now; the one after it grows by ``factor`` up to ``cap``."""
        delay = self._next
        self._next = self._grown(delay)
        return delay

    def after(self, failures: int) -> float:
        """The delay ``next()`` hands out after ``failures`` failed calls in a row from a fresh start
        (``first`` after one), without changing this backoff's state: the schedule of a caller that
        counts its own tries, such as a queued task's attempt number."""
        delay = self.first
        for _ in range(failures - 1):
            grown = self._grown(delay)
            if grown == delay:  # at the cap
                break
            delay = grown
        return delay

    def _grown(self, delay: float) -> float:
        return min(delay * self.factor, self.cap)

    def reset(self) -> None:
        """Start over from ``first`` (after a call went through)."""
        self._next = self.first
