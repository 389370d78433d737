"""Helpers of the search tests: start a search, wait for its status, page through its results."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from support import (RMQ_URL, AppServer, Client, Process, Response, assert_error, delete_rabbit_queue, poll, serve_app,
                     start_consumer)

HEX32 = re.compile(r"^[0-9a-f]{32}$")
SEARCH_PLUGINS = ("messenger_chats", "messenger_search")
RESULT_KEYS = {"message_id", "chat_id", "user_id", "text", "created_at"}
CONSUMER_APPS = "messenger_chats,messenger_search"


@asynccontextmanager
async def search_server(env: Mapping[str, str], plugins: tuple[str, ...] = SEARCH_PLUGINS,
                        **overrides: Any) -> AsyncIterator[AppServer]:
    """The app with chats and search (auth off unless the auth plugin is listed), embedded worker."""
    async with serve_app({**env, **{k: str(v) for k, v in overrides.items()}}, plugins=plugins) as srv:
        yield srv


def user_query(user_id: str | None) -> str:
    """``?user_id=...`` or nothing."""
    return f"?user_id={user_id}" if user_id is not None else ""


async def start_search(client: Client, text: str, user_id: str | None = None) -> str:
    """POST a search that must be accepted; its task id."""
    resp = await client.post("/v1/chats/search" + user_query(user_id), {"message": text})
    assert resp.status == 201, resp
    assert set(resp.json) == {"task_id"} and HEX32.match(resp.json["task_id"]), resp.json
    return resp.json["task_id"]


async def status(client: Client, task_id: str, user_id: str | None = None) -> Response:
    """GET the status (asserting nothing)."""
    return await client.get(f"/v1/chats/search/status/{task_id}" + user_query(user_id))


async def wait_status(client: Client, task_id: str, wanted: str = "SUCCESS", user_id: str | None = None,
                      timeout: float = 15.0) -> None:
    """Poll the status until it is ``wanted``."""
    async def reached() -> bool:
        resp = await status(client, task_id, user_id)
        assert resp.status == 200, resp
        assert resp.json["status"] in ("WAITING", "IN_PROCESS", "SUCCESS", "FAILED"), resp.json
        return resp.json["status"] == wanted
    await poll(reached, timeout)


async def results(client: Client, task_id: str, limit: int = 1000, start: str | None = None,
                  user_id: str | None = None) -> Response:
    """GET one results page (asserting nothing)."""
    query = f"limit={limit}" + (f"&from={start}" if start is not None else "")
    if user_id is not None:
        query += f"&user_id={user_id}"
    return await client.get(f"/v1/chats/search/{task_id}/messages?{query}")


async def read_results(client: Client, task_id: str, limit: int = 1000, start: str | None = None,
                       user_id: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """One results page that must be 200: its results and next iterator."""
    resp = await results(client, task_id, limit, start, user_id)
    assert resp.status == 200, resp
    body = resp.json
    assert set(body) == {"messages", "next"} and set(body["next"]) == {"iterator"}, body
    for item in body["messages"]:
        assert set(item) == RESULT_KEYS, item
    return body["messages"], body["next"]["iterator"]


async def search_texts(client: Client, text: str, user_id: str | None = None) -> list[str]:
    """Run a search to SUCCESS and return the texts found, in the order given."""
    task_id = await start_search(client, text, user_id)
    await wait_status(client, task_id, user_id=user_id)
    found, _ = await read_results(client, task_id, user_id=user_id)
    return [item["text"] for item in found]


async def check_paging(client: Client, task_id: str, found: list[dict[str, Any]]) -> None:
    """Pages of limit 2 over five results: acknowledged by ``from``, repeatable, bad cursors refused."""
    # paging: limit 2, then from=next; the same request twice gives the same page
    page1, next1 = await read_results(client, task_id, limit=2)
    assert [item["message_id"] for item in page1] == [found[0]["message_id"], found[1]["message_id"]]
    page2, next2 = await read_results(client, task_id, limit=2, start=next1)
    assert page2 == found[2:4]
    assert await read_results(client, task_id, limit=2, start=next1) == (page2, next2)
    # the results before next1 were acknowledged: gone, and asking for them again is a bad cursor
    assert_error(await results(client, task_id, limit=2, start="0"), 400, "bad-cursor")
    assert (await read_results(client, task_id, limit=2))[0] == page2  # no from: first kept result
    page3, next3 = await read_results(client, task_id, limit=2, start=next2)
    assert page3 == found[4:] and next3 == "5"
    assert await read_results(client, task_id, limit=2, start=next3) == ([], "5")
    for bad in ("6", "-1", "abc", "1.5", "9" * 20):
        assert_error(await results(client, task_id, limit=2, start=bad), 400, "bad-cursor")
    for limit in ("0", "1001", "x", ""):
        resp = await client.get(f"/v1/chats/search/{task_id}/messages?limit={limit}")
        assert_error(resp, 400, "bad-parameters")
    assert_error(await client.get(f"/v1/chats/search/{task_id}/messages"), 400, "bad-parameters")
    assert await read_results(client, task_id, limit=2, start="5") == ([], "5")  # refusals changed nothing


# ---- RabbitMQ and consumers (fixtures: import them into the test module) ----------------------

@pytest.fixture(name="rabbit_env")
def rabbit_env_fixture(env: dict[str, str]) -> Iterator[dict[str, str]]:
    """Settings with RabbitMQ on; this test's exchange and queue are deleted afterwards."""
    yield {**env, "RMQ_URL": RMQ_URL, "LOG_LEVEL": "INFO"}
    delete_rabbit_queue(env["SEARCH_QUEUE"], env["SEARCH_EXCHANGE"])


async def consumer(env: dict[str, str], log: Path, **overrides: str) -> Process:
    """A messenger-consumer with chats and search, once it consumes."""
    proc = start_consumer({**env, "MESSENGER_APPS": CONSUMER_APPS, **overrides}, log)

    async def ready() -> bool:
        assert proc.alive(), proc.log
        return "consumer ready" in proc.log
    await poll(ready, timeout=20)
    return proc
