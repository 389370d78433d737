"""The course's container mode: ``deploy/entrypoint messenger-api`` from the venv, PostgreSQL only.

The process gets only the course's variables (POSTGRES_HOSTS, POSTGRES_DB, POSTGRES_USER, POSTGRES_PWD,
AUTH_DISABLED=true, PORT) and PATH; its database does not exist yet, so the app must create it.  The
test walks every check listed in API.md "Compatibility notes" over HTTP, restarts the app on the same
database and reads the earlier messages back.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from deploy_support import Entrypoint, course_env, database_exists, missing_database, wait_ready
from support import Client, TcpProxy, free_port, poll

HEX32 = re.compile(r"^[0-9a-f]{32}$")
LONG_TEXT = (
    "Первая строка — длинное сообщение с тире — и кавычками «ёлочками».\n"
    "Second line — with em dashes — and trailing spaces   \n"
    "\n"
    "Third line after an empty one: tabs\tand emoji 🙂 — the end.\n"
) * 20
NOT_FOUND_CHAT = {"message": "chat-not-found"}
NOT_FOUND_USER = {"message": "user-not-found"}
BAD_PARAMETERS = {"message": "bad-parameters"}


async def new_chat(client: Client, name: str = "Pupkin chat") -> str:
    resp = await client.post("/v1/chats", {"chat_name": name})
    assert resp.status == 201, resp.body
    assert HEX32.match(resp.json["chat_id"]), resp.json
    return resp.json["chat_id"]


async def new_user(client: Client, chat_id: str, name: str = "Vasya Pupkin") -> str:
    resp = await client.post(f"/v1/chats/{chat_id}/users", {"user_name": name})
    assert resp.status == 201, resp.body
    assert HEX32.match(resp.json["user_id"]), resp.json
    return resp.json["user_id"]


async def post_message(client: Client, chat_id: str, user_id: str, text: str) -> str:
    # the course's tests also send chat_id in the query; it is ignored
    resp = await client.post(f"/v1/chats/{chat_id}/messages?user_id={user_id}&chat_id={chat_id}", {"message": text})
    assert resp.status == 201, resp.body
    assert HEX32.match(resp.json["message_id"]), resp.json
    return resp.json["message_id"]


async def read_page(client: Client, chat_id: str, query: str) -> dict[str, Any]:
    resp = await client.get(f"/v1/chats/{chat_id}/messages?{query}")
    assert resp.status == 200, resp.body
    page = resp.json
    assert isinstance(page["messages"], list)
    assert isinstance(page["next"]["iterator"], str)
    return page


async def chat_with_messages(client: Client, count: int) -> tuple[str, str, list[str]]:
    """A chat with one member who posted ``count`` numbered messages; (chat, user, message ids)."""
    chat_id = await new_chat(client, f"chat of {count}")
    user_id = await new_user(client, chat_id)
    ids = [await post_message(client, chat_id, user_id, f"message {i}") for i in range(count)]
    return chat_id, user_id, ids


async def check_chats_and_users(client: Client) -> None:
    chat_id = await new_chat(client)
    again = await new_chat(client)
    assert again != chat_id
    page = await read_page(client, chat_id, "limit=1")
    assert page["messages"] == []

    user_id = await new_user(client, chat_id)
    assert await new_user(client, chat_id) != user_id
    resp = await client.post("/v1/chats/random_chat/users", {"user_name": "Vasya Pupkin"})
    assert (resp.status, resp.json) == (404, NOT_FOUND_CHAT)
    resp = await client.post(f"/v1/chats/{chat_id}/users")
    assert (resp.status, resp.json) == (400, BAD_PARAMETERS)


async def check_messages(client: Client) -> None:
    chat_id = await new_chat(client)
    vasya = await new_user(client, chat_id)
    petya = await new_user(client, chat_id, "Petya")
    sent = [
        (await post_message(client, chat_id, vasya, "Hello world"), vasya, "Hello world"),
        (await post_message(client, chat_id, vasya, "Hello world"), vasya, "Hello world"),
        (await post_message(client, chat_id, vasya, LONG_TEXT), vasya, LONG_TEXT),
        (await post_message(client, chat_id, petya, "Hi from Petya"), petya, "Hi from Petya"),
    ]
    query = f"user_id={vasya}&chat_id={chat_id}"
    resp = await client.post(f"/v1/chats/random_chat/messages?{query}", {"message": "Hello world"})
    assert (resp.status, resp.json) == (404, NOT_FOUND_CHAT)
    resp = await client.post(f"/v1/chats/{chat_id}/messages?user_id=random_user&chat_id={chat_id}",
                             {"message": "Hello world"})
    assert (resp.status, resp.json) == (404, NOT_FOUND_USER)
    resp = await client.post(f"/v1/chats/{chat_id}/messages?{query}")
    assert (resp.status, resp.json) == (400, BAD_PARAMETERS)

    # the refused requests left nothing behind; the long text comes back byte for byte, oldest first
    page = await read_page(client, chat_id, "limit=10")
    got = [(m["message_id"], m["user_id"], m["text"]) for m in page["messages"]]
    assert got == sent


async def check_paging(client: Client) -> None:
    for messages, limit in ((5, 5), (10, 5), (5, 10), (0, 5)):
        chat_id, _, ids = await chat_with_messages(client, messages)
        page = await read_page(client, chat_id, f"limit={limit}")
        assert [m["message_id"] for m in page["messages"]] == ids[:limit], (messages, limit)
        assert len(page["messages"]) == min(messages, limit)

    chat_id, _, ids = await chat_with_messages(client, 1)
    for query in ("limit=-10", ""):
        resp = await client.get(f"/v1/chats/{chat_id}/messages?{query}")
        assert (resp.status, resp.json) == (400, BAD_PARAMETERS), query
    resp = await client.get("/v1/chats/random_chat/messages?limit=5")
    assert (resp.status, resp.json) == (404, NOT_FOUND_CHAT)

    chat_id, _, ids = await chat_with_messages(client, 7)
    first = await read_page(client, chat_id, "limit=5")
    second = await read_page(client, chat_id, f"limit=5&from={first['next']['iterator']}")
    assert [m["message_id"] for m in first["messages"]] == ids[:5]
    assert [m["message_id"] for m in second["messages"]] == ids[5:]
    third = await read_page(client, chat_id, f"limit=5&from={second['next']['iterator']}")
    assert third["messages"] == []


def start(tmp_path: Path, name: str, env: dict[str, str]) -> tuple[Entrypoint, Client]:
    proc = Entrypoint(env, tmp_path / f"{name}.log", "messenger-api")
    return proc, Client(f"http://127.0.0.1:{env['PORT']}")


async def test_course_scenarios_and_restart(tmp_path: Path) -> None:
    port = free_port()
    with missing_database() as database:
        env = course_env(database, port)
        proc, client = start(tmp_path, "first", env)
        try:
            ready = await wait_ready(proc, client)
            print(f"course mode: /ping_db 200 after {ready:.2f}s on a database created at start")
            assert ready < 15, proc.log
            assert database_exists(database)
            log = proc.log
            assert "entrypoint: waiting for PostgreSQL" in log
            assert f"created database {database}" in log
            assert "entrypoint: PostgreSQL ready after" in log
            assert "entrypoint: exec messenger-api" in log
            assert "messenger-api" in proc.cmdline()[1], proc.cmdline()  # exec'd: no shell in between

            await check_chats_and_users(client)
            await check_messages(client)
            await check_paging(client)
            chat_id, user_id, ids = await chat_with_messages(client, 5)
            before = (await read_page(client, chat_id, "limit=10"))["messages"]
            assert [m["message_id"] for m in before] == ids

            assert proc.stop(signal.SIGTERM) == 0, proc.log
            assert "stopped" in proc.log
        finally:
            proc.kill()

        proc, client = start(tmp_path, "second", env)
        try:
            await wait_ready(proc, client)
            assert "migrate: nothing to apply" in proc.log  # migrations ran again, found everything applied
            new_id = await post_message(client, chat_id, user_id, "after the restart")
            after = (await read_page(client, chat_id, "limit=10"))["messages"]
            assert len(after) == 6
            assert after[:5] == before
            assert (after[5]["message_id"], after[5]["text"]) == (new_id, "after the restart")
            assert proc.stop(signal.SIGTERM) == 0, proc.log
        finally:
            proc.kill()


@pytest.fixture
def pg_proxy() -> Any:
    """A TCP proxy in front of the shared PostgreSQL, to play an outage without stopping it."""
    proxy = TcpProxy(5432)
    yield proxy
    proxy.close()


async def test_waits_for_postgres_then_serves_and_reports_an_outage(tmp_path: Path, pg_proxy: TcpProxy) -> None:
    pg_proxy.cut()
    with missing_database() as database:
        env = course_env(database, free_port(), POSTGRES_HOSTS=f"127.0.0.1:{pg_proxy.port}")
        proc, client = start(tmp_path, "wait", env)
        try:
            await proc.wait_log("entrypoint: attempt 2: PostgreSQL not ready")
            assert proc.alive()
            with pytest.raises(ConnectionError):  # the app has not started: the entrypoint still waits
                await client.get("/ping", timeout=2)
            pg_proxy.restore()
            await wait_ready(proc, client)
            assert "entrypoint: PostgreSQL ready after" in proc.log
            chat_id = await new_chat(client)

            # the course: "/ping_db 200; after the database stops, 503"
            pg_proxy.cut()

            async def db_down() -> bool:
                resp = await client.get("/ping_db", timeout=5)
                return resp.status == 503 and resp.json == {"message": "database-unavailable"}
            await poll(db_down, 10)
            assert (await client.get("/ping")).status == 200
            resp = await client.post(f"/v1/chats/{chat_id}/users", {"user_name": "Vasya Pupkin"})
            assert (resp.status, resp.json) == (503, {"message": "database-unavailable"})

            pg_proxy.restore()
            await wait_ready(proc, client, timeout=15)

            # back by itself: a worker may still hand one request a pooled connection the outage
            # broke (503, never a 500), the next one works
            async def member_added() -> bool:
                resp = await client.post(f"/v1/chats/{chat_id}/users", {"user_name": "Vasya Pupkin"})
                assert resp.status in (201, 503), resp.body
                return resp.status == 201
            await poll(member_added, 10)
            assert proc.stop() == 0, proc.log
        finally:
            proc.kill()


async def test_deadline_passed_the_app_starts_anyway_and_migrates_later(tmp_path: Path, pg_proxy: TcpProxy) -> None:
    pg_proxy.cut()
    with missing_database() as database:
        env = course_env(database, free_port(), POSTGRES_HOSTS=f"127.0.0.1:{pg_proxy.port}", DB_WAIT_TIMEOUT="1")
        proc, client = start(tmp_path, "deadline", env)
        try:
            await wait_ready(proc, client, path="/ping")
            assert "PostgreSQL still not ready after 1s; starting anyway" in proc.log
            resp = await client.get("/ping_db")
            assert (resp.status, resp.json) == (503, {"message": "database-unavailable"})
            pg_proxy.restore()
            await wait_ready(proc, client, timeout=20)
            chat_id = await new_chat(client)  # the app created the database and the tables by itself

            async def migrated() -> bool:
                resp = await client.get(f"/v1/chats/{chat_id}/messages?limit=1")
                return resp.status == 200
            await poll(migrated, 10)
        finally:
            proc.kill()


async def test_sigterm_while_waiting_and_bad_settings_stop_at_once(tmp_path: Path, pg_proxy: TcpProxy) -> None:
    pg_proxy.cut()
    env = course_env("mt_deploy_never_created", free_port(), POSTGRES_HOSTS=f"127.0.0.1:{pg_proxy.port}")
    proc, _ = start(tmp_path, "sigterm", env)
    try:
        await proc.wait_log("entrypoint: attempt 1: PostgreSQL not ready")
        assert proc.stop(signal.SIGTERM, timeout=5) == 143
        assert "stopped by a signal while waiting" in proc.log
    finally:
        proc.kill()

    proc, _ = start(tmp_path, "bad", {**env, "PORT": "eighty"})
    try:
        assert proc.proc.wait(10) == 2
        assert "bad setting PORT='eighty'" in proc.log
        assert "not retrying" in proc.log
    finally:
        proc.kill()
    assert not database_exists("mt_deploy_never_created")


def json_records(log: str) -> list[dict[str, Any]]:
    """Every line of a LOG_FORMAT=json log: one JSON object each, with the fields of the app's lines."""
    records = []
    for line in log.splitlines():
        record = json.loads(line)  # a plain-text line fails here
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message", "request_id", "pid"} <= set(record), record
        records.append(record)
    return records


async def test_log_format_json_makes_every_line_of_the_container_one_object(
        tmp_path: Path, pg_proxy: TcpProxy) -> None:
    pg_proxy.cut()  # a failed attempt first: its reason quotes the host ("127.0.0.1")
    with missing_database() as database:
        env = course_env(database, free_port(), POSTGRES_HOSTS=f"127.0.0.1:{pg_proxy.port}", LOG_FORMAT="json")
        proc, client = start(tmp_path, "json", env)
        try:
            await proc.wait_log("attempt 1: PostgreSQL not ready")
            pg_proxy.restore()
            await wait_ready(proc, client)
            records = json_records(proc.log)
            own = [r for r in records if r["logger"] == "entrypoint"]
            messages = [r["message"] for r in own]
            assert messages[0].startswith("waiting for PostgreSQL (127.0.0.1:"), messages
            failed = [r for r in own if r["message"].startswith("attempt 1: PostgreSQL not ready")]
            assert len(failed) == 1 and failed[0]["level"] == "WARNING", own
            quoted = 'psycopg.OperationalError: connection failed: connection to server at "127.0.0.1"'
            assert quoted in failed[0]["message"], failed
            ready = [m for m in messages if m.startswith("PostgreSQL ready after")]
            assert len(ready) == 1 and "messenger_chats:0001_chats" in ready[0], messages
            assert "exec messenger-api" in messages
            assert {r["level"] for r in own} <= {"INFO", "WARNING"}
            assert all(r["pid"] == proc.proc.pid and r["request_id"] is None for r in own)
            # migrate's own JSON lines passed through as they were, then the app's
            created = [r for r in records if r["message"] == f"created database {database}"]
            assert len(created) == 1 and created[0]["logger"] == "messenger.db", records
            assert any(r["message"].startswith("serving http://") for r in records)
            assert proc.stop() == 0, proc.log
        finally:
            proc.kill()

    proc, _ = start(tmp_path, "json-bad", {**env, "PORT": "eighty"})
    try:
        assert proc.proc.wait(10) == 2
        records = json_records(proc.log)
        errors = [r["message"] for r in records if r["level"] == "ERROR" and r["logger"] == "entrypoint"]
        assert any("bad setting PORT='eighty'" in m for m in errors), records
        assert any("not retrying" in m for m in errors), records
    finally:
        proc.kill()
