"""Serving: worker processes on SO_REUSEPORT sockets, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

from support import Client, start_api


async def test_two_workers_each_accept_and_sigterm_finishes_requests_in_flight(
        example_installed: None, env: dict[str, str], tmp_path: Path) -> None:
    # pylint: disable=unused-argument
    proc, client = await start_api({**env, "WORKERS": "2", "LOG_LEVEL": "INFO", "ACCESS_LOG": "1",
                                    "MESSENGER_APPS": "messenger_example"}, tmp_path / "api.log")
    try:
        for _ in range(40):  # a new connection each time: the kernel spreads them over both sockets
            assert (await Client(client.base_url).get("/ping")).status == 200
        pids = set(re.findall(r"\[(\d+)\] messenger\.access: 200 GET /ping ", proc.log))
        assert len(pids) == 2, proc.log

        slow = asyncio.ensure_future(client.get("/v1/example/slow?seconds=1.5"))
        await asyncio.sleep(0.5)  # the request is in flight now
        proc.proc.send_signal(signal.SIGTERM)
        resp = await slow
        assert resp.status == 200 and resp.json == {"done": True}
        assert await asyncio.get_running_loop().run_in_executor(None, proc.proc.wait, 15) == 0
        assert "finishing 1 request(s) in flight" in proc.log
    finally:
        proc.stop()
