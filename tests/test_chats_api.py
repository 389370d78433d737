"""Chats, members and messages over HTTP, auth off: the course's black-box scenarios and every error row."""

from __future__ import annotations

import datetime
import uuid

from chats_support import HEX32, chats_server, join, new_chat, page, read_all, read_page, say, table_counts, table_names
from messenger_chats import cursor
from support import AppServer, Client, assert_error

from messenger_core.db import migrate_down, migrate_up

LONG_TEXT = ("Съешь же ещё этих мягких французских булок — да выпей чаю.\n"
             "Second line — with em dashes — and “quotes”, emoji 🙂👍🏽, CJK 漢字, RTL שלום.\n\n"
             "\tTabbed line; backslash \\ and \"double quotes\" and a trailing newline\n") * 40


async def test_course_create_chat_twice_and_read_it(chats: AppServer) -> None:
    client = chats.client
    first = await new_chat(client, "Pupkin chat")
    second = await new_chat(client, "Pupkin chat")
    assert first != second
    resp = await page(client, first, 1)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json["messages"] == []
    assert isinstance(resp.json["next"]["iterator"], str) and resp.json["next"]["iterator"]


async def test_course_join_twice_unknown_chat_and_no_body(chats: AppServer, database: str) -> None:
    client = chats.client
    chat = await new_chat(client, "Pupkin chat")
    first = await join(client, chat, "Vasya Pupkin")
    second = await join(client, chat, "Vasya Pupkin")
    assert first != second
    before = await table_counts(database)
    assert_error(await client.post("/v1/chats/random_chat/users", {"user_name": "Vasya Pupkin"}),
                 404, "chat-not-found")
    assert_error(await client.post(f"/v1/chats/{uuid.uuid4().hex}/users", {"user_name": "Vasya Pupkin"}),
                 404, "chat-not-found")
    assert_error(await client.post(f"/v1/chats/{chat}/users"), 400, "bad-parameters")
    assert await table_counts(database) == before


async def test_course_post_messages(chats: AppServer, database: str) -> None:
    client = chats.client
    chat = await new_chat(client, "Pupkin chat")
    vasya = await join(client, chat, "Vasya Pupkin")
    petya = await join(client, chat, "Petya")
    ids = [await say(client, chat, vasya, "Hello world"), await say(client, chat, vasya, "Hello world")]
    # the course also sends chat_id in the query: extra parameters are ignored
    resp = await client.post(f"/v1/chats/{chat}/messages?user_id={vasya}&chat_id={chat}", {"message": LONG_TEXT})
    assert resp.status == 201 and HEX32.match(resp.json["message_id"])
    ids.append(resp.json["message_id"])
    ids.append(await say(client, chat, petya, "Hi from the second user"))
    before = await table_counts(database)
    assert_error(await client.post(f"/v1/chats/random_chat/messages?user_id={vasya}", {"message": "x"}),
                 404, "chat-not-found")
    assert_error(await client.post(f"/v1/chats/{chat}/messages?user_id=random_user&chat_id={chat}",
                                   {"message": "x"}), 404, "user-not-found")
    assert_error(await client.post(f"/v1/chats/{chat}/messages?user_id={vasya}&chat_id={chat}"),
                 400, "bad-parameters")
    assert await table_counts(database) == before
    messages = await read_all(client, chat)
    assert [m["message_id"] for m in messages] == ids
    assert [m["user_id"] for m in messages] == [vasya, vasya, vasya, petya]
    assert [m["text"] for m in messages] == ["Hello world", "Hello world", LONG_TEXT, "Hi from the second user"]
    stamps = [datetime.datetime.fromisoformat(m["created_at"]) for m in messages]
    assert all(stamp.utcoffset() == datetime.timedelta(0) for stamp in stamps)
    assert stamps == sorted(stamps)


async def test_course_page_sizes(chats: AppServer) -> None:
    client = chats.client
    for messages, limit in [(5, 5), (10, 5), (5, 10), (0, 5)]:
        chat = await new_chat(client, "Pupkin chat")
        user = await join(client, chat, "Vasya Pupkin")
        for number in range(messages):
            await say(client, chat, user, f"message {number}")
        got, _ = await read_page(client, chat, limit)
        assert [m["text"] for m in got] == [f"message {n}" for n in range(min(messages, limit))], (messages, limit)


async def test_course_bad_limits_unknown_chat_and_seven_by_five(chats: AppServer) -> None:
    client = chats.client
    chat = await new_chat(client, "Pupkin chat")
    user = await join(client, chat, "Vasya Pupkin")
    for number in range(7):
        await say(client, chat, user, f"message {number}")
    assert_error(await client.get(f"/v1/chats/{chat}/messages?limit=-10"), 400, "bad-parameters")
    assert_error(await client.get(f"/v1/chats/{chat}/messages"), 400, "bad-parameters")
    assert_error(await client.get("/v1/chats/random_chat/messages?limit=5"), 404, "chat-not-found")
    assert_error(await client.get(f"/v1/chats/{uuid.uuid4().hex}/messages?limit=5"), 404, "chat-not-found")
    first, iterator = await read_page(client, chat, 5)
    second, _ = await read_page(client, chat, 5, iterator)
    assert [m["text"] for m in first] == [f"message {n}" for n in range(5)]
    assert [m["text"] for m in second] == ["message 5", "message 6"]


async def test_course_restart_on_the_same_database(env: dict[str, str]) -> None:
    async with chats_server(env) as srv:
        chat = await new_chat(srv.client, "Pupkin chat")
        user = await join(srv.client, chat, "Vasya Pupkin")
        for number in range(5):
            await say(srv.client, chat, user, f"before {number}")
    async with chats_server(env) as srv:  # migrations run again, harmlessly
        await say(srv.client, chat, user, "after")
        messages = await read_all(srv.client, chat, limit=4)
        assert [m["text"] for m in messages] == [f"before {n}" for n in range(5)] + ["after"]


async def test_limit_bounds(chats: AppServer) -> None:
    client = chats.client
    chat = await new_chat(client)
    user = await join(client, chat)
    await say(client, chat, user, "only")
    for bad in ("0", "1001", "abc", "1.5", "", "1e3", "%20"):
        assert_error(await client.get(f"/v1/chats/{chat}/messages?limit={bad}"), 400, "bad-parameters")
    for good in (1, 1000):
        got, _ = await read_page(client, chat, good)
        assert [m["text"] for m in got] == ["only"]
    # the last value of a repeated parameter counts; unknown parameters are ignored
    got, _ = await read_page(client, chat, 1, None)
    resp = await client.get(f"/v1/chats/{chat}/messages?limit=0&limit=1&colour=blue")
    assert resp.status == 200 and resp.json["messages"] == got


BAD_CHAT_BODIES = [
    b"", b"not json", b"[]", b'"text"', b"{}", b'{"chat_name": null}', b'{"chat_name": 5}',
    b'{"chat_name": "' + b"x" * 256 + b'"}', b'{"chat_name": "nul \\u0000 inside"}',
    b'{"chat_name": "lone \\ud800 surrogate"}', b'{"chat_name": "ok", "x": 1}', b"\xff\xfe",
]


async def test_create_chat_refuses_bad_bodies(chats: AppServer, database: str) -> None:
    for body in BAD_CHAT_BODIES:
        assert_error(await chats.client.request("POST", "/v1/chats", raw=body), 400, "bad-parameters")
    assert await table_counts(database) == {"chats": 0, "chat_members": 0, "messages": 0}


async def test_chat_name_bounds(chats: AppServer) -> None:
    for name in ("", "x" * 255, "многоязычный чат 🙂"):
        chat = await new_chat(chats.client, name)
        assert (await page(chats.client, chat, 1)).status == 200


BAD_MEMBER_BODIES = [
    b"", b"{", b"[1]", b"{}", b'{"user_name": ""}', b'{"user_name": null}', b'{"user_name": ["a"]}',
    b'{"user_name": "' + b"u" * 256 + b'"}', b'{"user_name": "a\\u0000b"}',
]


async def test_join_refuses_bad_bodies(chats: AppServer, database: str) -> None:
    chat = await new_chat(chats.client)
    for body in BAD_MEMBER_BODIES:
        resp = await chats.client.request("POST", f"/v1/chats/{chat}/users", raw=body)
        assert_error(resp, 400, "bad-parameters")
    assert await table_counts(database) == {"chats": 1, "chat_members": 0, "messages": 0}


async def test_user_name_bounds(chats: AppServer) -> None:
    chat = await new_chat(chats.client)
    for name in ("a", "u" * 255, "Вася Пупкин"):
        await join(chats.client, chat, name)


BAD_MESSAGE_BODIES = [
    b"", b"nope", b"[]", b"{}", b'{"message": ""}', b'{"message": null}', b'{"message": 42}',
    b'{"message": "' + b"m" * 65537 + b'"}', b'{"message": "a\\u0000b"}', b'{"message": "\\udfff"}',
]


async def test_post_message_refuses_bad_bodies(chats: AppServer, database: str) -> None:
    chat = await new_chat(chats.client)
    user = await join(chats.client, chat)
    await say(chats.client, chat, user, "kept")
    for body in BAD_MESSAGE_BODIES:
        resp = await chats.client.request("POST", f"/v1/chats/{chat}/messages?user_id={user}", raw=body)
        assert_error(resp, 400, "bad-parameters")
    assert await table_counts(database) == {"chats": 1, "chat_members": 1, "messages": 1}
    assert [m["text"] for m in await read_all(chats.client, chat)] == ["kept"]


async def test_message_length_bounds(chats: AppServer) -> None:
    chat = await new_chat(chats.client)
    user = await join(chats.client, chat)
    longest = "ж" * 65536
    await say(chats.client, chat, user, "a")
    await say(chats.client, chat, user, longest)
    assert [m["text"] for m in await read_all(chats.client, chat)] == ["a", longest]


async def test_post_message_check_order(chats: AppServer, database: str) -> None:
    """chat id not a UUID, then user_id, then body, then unknown chat, then membership."""
    client = chats.client
    chat = await new_chat(client)
    other_chat = await new_chat(client)
    user = await join(client, chat)
    stranger = await join(client, other_chat)
    unknown_chat, unknown_user = uuid.uuid4().hex, uuid.uuid4().hex
    good, bad = {"message": "hi"}, {"message": ""}

    async def post(chat_id: str, query: str, body: dict[str, str]) -> tuple[int, str]:
        resp = await client.post(f"/v1/chats/{chat_id}/messages{query}", body)
        return resp.status, resp.json["message"]

    cases = [
        ("random_chat", "", bad, (404, "chat-not-found")),
        ("random_chat", "?user_id=random_user", bad, (404, "chat-not-found")),
        (chat, "", bad, (404, "user-not-found")),
        (chat, "?user_id=", bad, (404, "user-not-found")),
        (chat, "?user_id=random_user", bad, (404, "user-not-found")),
        (unknown_chat, "?user_id=random_user", bad, (404, "user-not-found")),
        (unknown_chat, f"?user_id={user}", bad, (400, "bad-parameters")),
        (chat, f"?user_id={unknown_user}", bad, (400, "bad-parameters")),
        (unknown_chat, f"?user_id={unknown_user}", good, (404, "chat-not-found")),
        (unknown_chat, f"?user_id={user}", good, (404, "chat-not-found")),
        (chat, f"?user_id={unknown_user}", good, (404, "user-not-found")),
        (chat, f"?user_id={stranger}", good, (404, "user-not-found")),
        (other_chat, f"?user_id={user}", good, (404, "user-not-found")),
    ]
    for chat_id, query, body, expected in cases:
        assert await post(chat_id, query, body) == expected, (chat_id, query, body)
    assert (await table_counts(database))["messages"] == 0
    assert await read_all(client, chat) == [] and await read_all(client, other_chat) == []


async def test_bad_cursors(chats: AppServer, database: str) -> None:
    client = chats.client
    chat = await new_chat(client)
    other = await new_chat(client)
    user = await join(client, chat)
    for number in range(3):
        await say(client, chat, user, f"m{number}")
    _, iterator = await read_page(client, chat, 2)
    _, foreign = await read_page(client, other, 2)
    edited = iterator[:10] + ("A" if iterator[10] != "A" else "B") + iterator[11:]
    beyond = cursor.encode(uuid.UUID(chat), 4)  # well-formed, but the chat has only 3 messages
    for bad in ("", "x", "start", iterator[:-1], iterator + "A", edited, iterator.lower(), foreign, beyond,
                "%00" * 38):
        assert_error(await page(client, chat, 2, bad), 400, "bad-cursor")
    # a non-UUID chat is still "not found", whatever the cursor; a good cursor keeps working
    assert_error(await page(client, "random_chat", 2, iterator), 404, "chat-not-found")
    got, _ = await read_page(client, chat, 2, iterator)
    assert [m["text"] for m in got] == ["m2"]
    assert (await table_counts(database))["messages"] == 3


async def test_next_iterator_of_empty_pages(chats: AppServer) -> None:
    client = chats.client
    chat = await new_chat(client)
    first, start = await read_page(client, chat, 5)
    again, start_again = await read_page(client, chat, 5, start)
    assert first == again == [] and start_again == start
    user = await join(client, chat)
    message_id = await say(client, chat, user, "the first")
    got, after = await read_page(client, chat, 5, start)  # polling from "the start" finds it
    assert [m["message_id"] for m in got] == [message_id]
    empty, same = await read_page(client, chat, 5, after)
    assert empty == [] and same == after


async def test_ids_in_paths_and_methods(chats: AppServer) -> None:
    client: Client = chats.client
    chat = await new_chat(client)
    user = await join(client, chat)
    dashed = str(uuid.UUID(chat))  # the dashed spelling names the same chat
    await say(client, dashed, user, "dashed")
    assert [m["text"] for m in await read_all(client, chat)] == ["dashed"]
    assert_error(await client.request("PUT", f"/v1/chats/{chat}/users", {}), 405, "method-not-allowed")
    assert_error(await client.request("DELETE", "/v1/chats"), 405, "method-not-allowed")
    # the chat list needs an account (API.md, Conversations): with auth off it does not exist
    assert_error(await client.get("/v1/chats"), 404, "not-found")
    assert_error(await client.request("DELETE", f"/v1/chats/{chat}/messages"), 405, "method-not-allowed")
    assert_error(await client.get(f"/v1/chats/{chat}"), 404, "not-found")


async def test_migrations_roll_back_and_apply_again(chats: AppServer, database: str) -> None:
    runtime = chats.runtime
    chat = await new_chat(chats.client)
    assert await migrate_down(runtime.config, runtime.migrations, "messenger_chats") == [
        "messenger_chats:0003_changes", "messenger_chats:0002_conversations", "messenger_chats:0001_chats"]
    assert await table_names(database) == set()
    assert await migrate_up(runtime.config, runtime.migrations) == [
        "messenger_chats:0001_chats", "messenger_chats:0002_conversations", "messenger_chats:0003_changes"]
    assert await migrate_up(runtime.config, runtime.migrations) == []  # idempotent
    assert await table_names(database) == {"chats", "chat_members", "messages"}
    assert_error(await page(chats.client, uuid.uuid4().hex, 1), 404, "chat-not-found")
    fresh = await new_chat(chats.client)
    assert fresh != chat and (await page(chats.client, fresh, 1)).status == 200
