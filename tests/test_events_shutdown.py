"""SIGTERM with held long-polls and open streams: the polls answer their empty page, streams close 1001."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

from chats_support import join, new_chat, read_page
from events_support import Stream
from support import poll, start_api


async def test_sigterm_answers_held_polls_and_closes_streams(env: dict[str, str], tmp_path: Path) -> None:
    app_env = {**env, "WORKERS": "2", "MESSENGER_APPS": "messenger_chats,messenger_events", "LOG_LEVEL": "DEBUG"}
    proc, client = await start_api(app_env, tmp_path / "api.log")
    try:
        chat = await new_chat(client)
        await join(client, chat)
        _, start = await read_page(client, chat, 5)
        polls = [asyncio.ensure_future(client.get(f"/v1/chats/{chat}/messages?limit=5&from={start}&wait=60",
                                                  timeout=70)) for _ in range(3)]
        streams = [await Stream.open(client.base_url) for _ in range(2)]
        for stream in streams:
            await stream.ready()
            assert await stream.subscribe({chat: start}) == [{"type": "subscribed", "chats": [chat]}]

        async def all_held() -> bool:
            return len(re.findall(r"long-poll held: chat " + chat, proc.log)) == 3
        await poll(all_held, timeout=20)
        stopped = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        for resp in await asyncio.gather(*polls):
            assert resp.status == 200, resp
            assert resp.json == {"messages": [], "next": {"iterator": start}}
        for stream in streams:
            code, frames = await stream.closed()
            assert (code, frames) == (1001, [])
        assert await asyncio.get_running_loop().run_in_executor(None, proc.proc.wait, 30) == 0
        assert time.monotonic() - stopped < 30  # drained at once, not after the 60 s wait
    finally:
        assert proc.stop() == 0
