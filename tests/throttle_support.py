"""Helpers of the throttle tests: bursts of concurrent requests and reading their outcome."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping

from support import Client, Response

RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining")
LIMITED = {"message": "request-limit-exceeded"}


async def burst(client: Client, n: int, path: str = "/ping",
                headers: Mapping[str, str] | None = None) -> tuple[list[Response], float]:
    """Send ``n`` concurrent GETs; the responses (in send order) and the seconds the burst took."""
    started = time.monotonic()
    responses = await asyncio.gather(*(client.get(path, headers=headers) for _ in range(n)))
    return list(responses), time.monotonic() - started


def statuses(responses: list[Response]) -> Counter[int]:
    """How many responses had each status."""
    return Counter(resp.status for resp in responses)


def assert_limited(resp: Response, limit: int | None = None) -> None:
    """A 429 of the throttle: JSON body, Retry-After in whole seconds >= 1, rate headers."""
    assert resp.status == 429, (resp.status, resp.body)
    assert resp.json == LIMITED
    assert resp.headers["Content-Type"].startswith("application/json")
    assert int(resp.headers["Retry-After"]) >= 1
    if limit is not None:
        assert resp.headers["X-RateLimit-Limit"] == str(limit)
        assert resp.headers["X-RateLimit-Remaining"] == "0"
