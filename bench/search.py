"""W5: search end to end, one client at a time, timed from the POST to the first page of results.

Each search: ``POST /v1/chats/search`` (201 task_id), ``GET .../status/{task}`` every
:data:`POLL_INTERVAL` seconds until SUCCESS or FAILED, then ``GET .../{task}/messages?limit=100``.
The page must list exactly the expected messages (found in PostgreSQL by a plain ``LIKE``, newest
first) for the search to count as correct.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass, field
from typing import Any

from .corpus import RARE_WORDS, Account, expected_results
from .measure import Process, median, pids_of
from .stack import Stack, cpu_seconds

POLL_INTERVAL = 0.002
SEARCH_DEADLINE = 30.0


class Connection:
    """One keep-alive HTTP/1.1 connection with the session header."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.headers = headers

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request; (status, JSON body or None)."""
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        return resp.status, (json.loads(raw) if raw else None)

    def close(self) -> None:
        """Close the socket."""
        self.conn.close()


@dataclass
class SearchRow:
    """One corpus: medians over the runs of p50/p99, the count of correct searches, server CPU."""

    name: str
    searches: int
    correct: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    polls: float
    cpu_ms_per_search: float
    failures: list[str]


def one_search(conn: Connection, word: str) -> tuple[float, list[str], float]:
    """Run one search; (seconds, result ids, status polls)."""
    started = time.perf_counter()
    status, data = conn.call("POST", "/v1/chats/search", {"message": word})
    if status != 201:
        raise RuntimeError(f"search POST: {status} {data}")
    task = data["task_id"]
    polls = 0.0
    while True:
        polls += 1
        status, data = conn.call("GET", f"/v1/chats/search/status/{task}")
        if status != 200:
            raise RuntimeError(f"search status: {status} {data}")
        if data["status"] in ("SUCCESS", "FAILED"):
            break
        if time.perf_counter() - started > SEARCH_DEADLINE:
            raise RuntimeError(f"search {task} still {data['status']} after {SEARCH_DEADLINE}s")
        time.sleep(POLL_INTERVAL)
    status, page = conn.call("GET", f"/v1/chats/search/{task}/messages?limit=100")
    elapsed = time.perf_counter() - started
    if status != 200:
        return elapsed, [f"status {status}: {page}"], polls
    return elapsed, [item["message_id"] for item in page["messages"]], polls


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


@dataclass
class _Series:
    """What the search runs measured so far."""

    p50s: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    maxes: list[float] = field(default_factory=list)
    polls: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    total: int = 0
    correct: int = 0
    failures: list[str] = field(default_factory=list)


def _series(conn: Connection, expected: dict[str, list[str]], searches: int, pids: list[int], got: _Series) -> None:
    """One run: ``searches`` searches cycling through the rare words, checked against ``expected``."""
    times = []
    before = cpu_seconds(pids)
    for i in range(searches):
        word = RARE_WORDS[i % len(RARE_WORDS)]
        elapsed, ids, polls = one_search(conn, word)
        times.append(elapsed * 1000)
        got.polls.append(polls)
        got.total += 1
        if ids == expected[word]:
            got.correct += 1
        elif len(got.failures) < 3:
            got.failures.append(f"{word}: got {len(ids)} ids, expected {len(expected[word])}")
    got.cpu.append(1000 * (cpu_seconds(pids) - before) / searches)
    got.p50s.append(percentile(times, 50))
    got.p99s.append(percentile(times, 99))
    got.maxes.append(max(times))


def run_searches(name: str, stack: Stack, account: Account, procs: list[Process], searches: int,
                 runs: int) -> SearchRow:
    """A warm-up search, then ``runs`` series of ``searches`` searches; medians of the series."""
    expected = {word: expected_results(stack, account, word) for word in RARE_WORDS}
    conn = Connection(stack.port, account.headers)
    got = _Series()
    try:
        one_search(conn, RARE_WORDS[0])
        for _ in range(runs):
            _series(conn, expected, searches, pids_of(procs), got)
    finally:
        conn.close()
    return SearchRow(name=name, searches=got.total, correct=got.correct, p50_ms=median(got.p50s),
                     p99_ms=median(got.p99s), max_ms=max(got.maxes), polls=median(got.polls),
                     cpu_ms_per_search=median(got.cpu), failures=got.failures)
