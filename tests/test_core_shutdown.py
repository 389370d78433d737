"""Shutdown is bounded: a closer that never returns, or a task that ignores its cancel, cannot keep a
stopped process alive."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest

from messenger_core import Runtime, hookimpl
from messenger_core.runtime import STOP_STEP_SECONDS
from support import Client, Process, free_port, serve_app, wait_serving

HERE = Path(__file__).parent


class Unanswered:
    """A plugin whose shutdown hook waits for a peer that never answers (it does honour cancels)."""

    @hookimpl
    async def messenger_shutdown(self, runtime: Runtime) -> None:  # pylint: disable=unused-argument
        """Wait forever."""
        await asyncio.Event().wait()


async def test_a_shutdown_hook_that_never_returns_is_left_behind_and_the_pools_still_close(
        env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="messenger.runtime")

    async def serve_then_stop() -> Runtime:
        async with serve_app(env, plugins=["messenger_chats"], extra={"unanswered": Unanswered()}) as srv:
            assert (await srv.client.get("/ping_db")).status == 200
            return srv.runtime
    # the guard only keeps a regression from hanging the suite: without the bound the stop never ends
    runtime = await asyncio.wait_for(serve_then_stop(), timeout=STOP_STEP_SECONDS + 20)
    assert "the plugins' shutdown hooks did not finish" in caplog.text
    assert runtime.db.pool.closed  # the steps after the stuck one still ran


async def test_a_task_that_ignores_its_cancel_does_not_keep_the_process_alive(
        env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    proc = Process([sys.executable, str(HERE / "stuck_worker.py")],
                   {**env, "PORT": str(port), "LOG_LEVEL": "INFO"}, tmp_path / "api.log")
    try:
        await wait_serving(proc, Client(f"http://127.0.0.1:{port}"), "/ping")
    finally:
        code = proc.stop(timeout=20)
    assert code == 0, proc.log
    assert "deaf task: cancel ignored" in proc.log
    assert "ignored its cancel; exiting without it" in proc.log
