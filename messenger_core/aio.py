"""Small asyncio helpers of the core: awaiting hook results, and one capped exponential backoff."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any


async def resolve(value: Any) -> Any:
    """A hookimpl's result, awaited when the hookimpl was ``async def``."""
    return await value if inspect.isawaitable(value) else value


async def gather(results: Iterable[Any]) -> list[Any]:
    """Resolve every result of a hook call, in order."""
    return [await resolve(value) for value in results]


class Backoff:
    """Delays for retrying a call that failed: ``first``, then doubled each time, at most ``cap``.

    ``next()`` is the delay before the next try; ``reset()`` after a success starts over.  The one
    retry schedule of every reconnect loop (migrations, the near cache's subscription, the
    consumer's broker connection, a task waiting out an outage).
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
        self._next = min(delay * self.factor, self.cap)
        return delay

    def reset(self) -> None:
        """Start over from ``first`` (after a call went through)."""
        self._next = self.first
