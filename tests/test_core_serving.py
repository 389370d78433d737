"""Serving: worker processes on SO_REUSEPORT sockets, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import signal
from pathlib import Path

from chats_support import join, longpolls_held, new_chat, say
from support import BIN, Client, Process, free_port, poll, start_api


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


async def test_each_event_loop_serves_a_long_poll_woken_by_a_post(env: dict[str, str], tmp_path: Path) -> None:
    """EVENT_LOOP: uvloop by default, asyncio on request; on both, a held long-poll (psycopg's LISTEN, Tornado's
    sockets, the loop's timers) answers with the message another request posted."""
    for setting, expected in ((None, "uvloop"), ("asyncio", "asyncio")):
        chosen = {"EVENT_LOOP": setting} if setting else {}
        proc, client = await start_api({**env, **chosen, "LOG_LEVEL": "INFO", "MESSENGER_APPS": "messenger_chats"},
                                       tmp_path / f"api-{expected}.log")
        try:
            assert f"{expected} loop, plugins: messenger_chats" in proc.log, proc.log
            chat = await new_chat(client, expected)
            user = await join(client, chat, "poster")
            start = (await client.get(f"/v1/chats/{chat}/messages?limit=10")).json["next"]["iterator"]
            held = asyncio.ensure_future(client.get(f"/v1/chats/{chat}/messages?limit=10&from={start}&wait=20",
                                                    timeout=30))
            await poll(functools.partial(longpolls_held, client, 1.0), timeout=10)
            assert not held.done()
            await say(client, chat, user, f"on {expected}")
            resp = await asyncio.wait_for(held, 10)
            assert resp.status == 200 and [m["text"] for m in resp.json["messages"]] == [f"on {expected}"], resp
        finally:
            proc.stop()


async def test_an_unknown_event_loop_is_refused_at_start(env: dict[str, str], tmp_path: Path) -> None:
    proc = Process([str(BIN / "messenger-api")], {**env, "EVENT_LOOP": "tokio", "PORT": str(free_port())},
                   tmp_path / "api.log")
    try:
        code = await asyncio.get_running_loop().run_in_executor(None, proc.proc.wait, 20)
        assert code == 2, proc.log
        assert "bad setting EVENT_LOOP='tokio'" in proc.log and "uvloop" in proc.log, proc.log
    finally:
        proc.stop()
