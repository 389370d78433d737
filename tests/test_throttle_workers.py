"""Two worker processes of a real ``messenger-api``: the Redis backend shares one limit, memory counts per process."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from support import Process, poll, start_api
from throttle_support import assert_limited, burst, statuses

RPS = 5
SENT = 4 * RPS
ACCESS = re.compile(r"\[(\d+)\] messenger\.access: (\d{3}) GET /ping\?burst=(\w+) ")


def worker_env(env: dict[str, str], backend: str) -> dict[str, str]:
    """Two workers, only the throttle plugin, access log on (its lines carry the worker's pid)."""
    return {**env, "WORKERS": "2", "CACHE_TYPE": backend, "THROTTLE_RPS": str(RPS),
            "MESSENGER_APPS": "messenger_throttle", "TRUSTED_PROXIES": "127.0.0.1",
            "LOG_LEVEL": "INFO", "ACCESS_LOG": "1"}


async def both_workers_serve(proc: Process) -> None:
    """Wait until each worker bound its SO_REUSEPORT socket (each logs 'serving ... (pid N')."""
    async def two() -> bool:
        return len(set(re.findall(r"serving http://\S+ \(pid (\d+)", proc.log))) == 2
    await poll(two, timeout=20)


def served_by(proc: Process, tag: str) -> Counter[tuple[str, int]]:
    """(pid, status) of every burst request tagged ``tag``, from the access log."""
    return Counter((pid, int(status)) for pid, status, seen in ACCESS.findall(proc.log) if seen == tag)


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_workers_share_the_limit_only_through_redis(env: dict[str, str], tmp_path: Path, backend: str) -> None:
    proc, client = await start_api(worker_env(env, backend), tmp_path / "api.log")
    try:
        await both_workers_serve(proc)
        # A client IP of its own (through the trusted proxy header): the readiness probes counted elsewhere.
        responses, took = await burst(client, SENT, path=f"/ping?burst={backend}",
                                      headers={"X-Real-IP": "10.7.7.7"})
        assert took < 0.9, f"the burst took {took:.2f}s, longer than the window: the machine is too slow"
        counts = statuses(responses)
        assert set(counts) <= {200, 429}
        for resp in responses:
            if resp.status == 429:
                assert_limited(resp, RPS)

        async def logged() -> Counter[tuple[str, int]] | None:
            lines = served_by(proc, backend)
            return lines if sum(lines.values()) == SENT else None
        lines = await poll(logged, timeout=5)
        pids = {pid for pid, _ in lines}
        assert len(pids) == 2, f"one worker got every connection: {lines}"
        passed_per_pid = {pid: lines[(pid, 200)] for pid in pids}
        if backend == "redis":
            # One budget for the client whichever process answers: exactly RPS pass in the window.
            assert counts[200] == RPS, lines
            remaining = sorted(int(r.headers["X-RateLimit-Remaining"]) for r in responses if r.status == 200)
            assert remaining == list(range(RPS))
        else:
            # Each process counts alone: up to RPS per process, so more than RPS in all.
            assert all(passed <= RPS for passed in passed_per_pid.values()), lines
            assert counts[200] == sum(min(RPS, lines[(pid, 200)] + lines[(pid, 429)]) for pid in pids)
            assert counts[200] > RPS, lines
    finally:
        assert proc.stop() == 0
