"""Serving: worker processes on SO_REUSEPORT sockets, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from pathlib import Path

from support import Client, poll, start_api


async def test_two_workers_each_accept_and_sigterm_finishes_requests_in_flight(
        example_bin: Path, env: dict[str, str], tmp_path: Path) -> None:
    proc, client = await start_api({**env, "WORKERS": "2", "LOG_LEVEL": "INFO", "ACCESS_LOG": "1",
                                    "MESSENGER_APPS": "messenger_example"}, tmp_path / "api.log", bin_dir=example_bin)
    try:
        for _ in range(40):  # a new connection each time: the kernel spreads them over both sockets
            assert (await Client(client.base_url).get("/ping")).status == 200
        pids = set(re.findall(r"\[(\d+)\] messenger\.access: 200 GET /ping ", proc.log))
        assert len(pids) == 2, proc.log

        slow = asyncio.ensure_future(client.get("/v1/example/slow?seconds=1.5"))

        async def in_flight() -> bool:
            return "slow request started" in proc.log
        await poll(in_flight, timeout=5)
        proc.proc.send_signal(signal.SIGTERM)
        resp = await slow
        assert resp.status == 200 and resp.json == {"done": True}
        assert await asyncio.get_running_loop().run_in_executor(None, proc.proc.wait, 15) == 0
        assert "finishing 1 request(s) in flight" in proc.log
    finally:
        proc.stop()


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text(encoding="utf-8").rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


async def test_workers_stop_when_their_supervisor_is_killed(env: dict[str, str], tmp_path: Path) -> None:
    proc, client = await start_api({**env, "WORKERS": "2", "MESSENGER_APPS": "messenger_chats"},
                                   tmp_path / "api.log")
    workers = _children(proc.proc.pid)
    assert len(workers) == 2
    assert (await client.get("/ping")).status == 200
    proc.proc.send_signal(signal.SIGKILL)  # only the supervisor, not its process group
    proc.proc.wait(5)

    async def all_gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in workers)
    try:
        await poll(all_gone, timeout=10)
    finally:
        proc.stop()
        for pid in workers:  # never leave orphans behind, even when the test fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text(encoding="utf-8").split("State:", 1)[1].split("\n", 1)[0].lower()
    except (OSError, IndexError):
        return "zombie"
