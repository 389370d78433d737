"""GET /v1/events: the WebSocket stream, auth off and on, in one process."""

from __future__ import annotations

from auth_support import bearer, new_session
from chats_support import join, new_chat, read_page, say
from events_support import Stream, of_type
from support import assert_error, serve_app

CHATS_EVENTS = ("messenger_chats", "messenger_events")


async def test_a_plain_get_is_400(env: dict[str, str]) -> None:
    async with serve_app(env, plugins=CHATS_EVENTS) as srv:
        assert_error(await srv.client.get("/v1/events"), 400, "bad-parameters")
        assert_error(await srv.client.get("/v1/events", headers={"Upgrade": "websocket"}), 400, "bad-parameters")


async def test_auth_off_subscribe_backlog_then_live(env: dict[str, str]) -> None:
    async with serve_app(env, plugins=CHATS_EVENTS) as srv:
        chat = await new_chat(srv.client)
        user = await join(srv.client, chat)
        first = await say(srv.client, chat, user, "one")
        _, start = await read_page(srv.client, chat, 10)
        await say(srv.client, chat, user, "two")
        stream = await Stream.open(srv.url)
        await stream.ready()
        frames = await stream.subscribe({chat: start})
        messages = of_type(frames, "message")
        assert [f["message"]["text"] for f in messages] == ["two"]
        assert frames[-1] == {"type": "subscribed", "chats": [chat]}
        page, after = await read_page(srv.client, chat, 10, start)
        assert [f["message"] for f in messages] == page and messages[-1]["iterator"] == after
        assert messages[0]["chat_id"] == chat
        # live
        third = await say(srv.client, chat, user, "three")
        frame = await stream.next()
        assert frame is not None and frame["type"] == "message" and frame["message"]["message_id"] == third
        page, after = await read_page(srv.client, chat, 10, messages[-1]["iterator"])
        assert [frame["message"]] == page and frame["iterator"] == after
        # a resubscribe from the start restarts the chat
        frames = await stream.subscribe({chat: None})
        assert frames == [{"type": "subscribed", "chats": [chat]}]
        _, beginning = await read_page(srv.client, chat, 1)
        frames = await stream.subscribe({chat: beginning})
        assert [f["message"]["message_id"] for f in of_type(frames, "message")][0] != first
        assert len(of_type(frames, "message")) == 2
        stream.close()


async def test_bad_frames_get_errors_and_the_stream_goes_on(env: dict[str, str]) -> None:
    async with serve_app(env, plugins=CHATS_EVENTS) as srv:
        chat = await new_chat(srv.client)
        other = await new_chat(srv.client)
        user = await join(srv.client, chat)
        _, other_start = await read_page(srv.client, other, 1)
        stream = await Stream.open(srv.url)
        await stream.ready()
        for bad in ("not json", "[1, 2]", '{"no": "type"}', '{"type": "dance"}', '{"type": "subscribe"}',
                    '{"type": "subscribe", "chats": [1]}'):
            await stream.send(bad)
            assert await stream.next() == {"type": "error", "message": "bad-parameters"}, bad
        frames = await stream.subscribe({"random_chat": None, "0" * 32: None, chat: "garbage",
                                         other: other_start.replace("A", "B", 1) if "A" in other_start else "x"})
        errors = of_type(frames, "error")
        assert {"type": "error", "message": "chat-not-found", "chat_id": "random_chat"} in errors
        assert {"type": "error", "message": "chat-not-found", "chat_id": "0" * 32} in errors
        assert {"type": "error", "message": "bad-cursor", "chat_id": chat} in errors
        assert {"type": "error", "message": "bad-cursor", "chat_id": other} in errors
        assert frames[-1] == {"type": "subscribed", "chats": []}
        # an iterator of another chat is bad-cursor too
        frames = await stream.subscribe({chat: other_start})
        assert of_type(frames, "error") == [{"type": "error", "message": "bad-cursor", "chat_id": chat}]
        frames = await stream.subscribe({chat: None})
        assert frames == [{"type": "subscribed", "chats": [chat]}]
        sent = await say(srv.client, chat, user, "still streaming")
        frame = await stream.next()
        assert frame is not None and frame["message"]["message_id"] == sent
        stream.close()


async def test_auth_by_header_carries_the_accounts_chats(env: dict[str, str]) -> None:
    async with serve_app(env) as srv:
        session = await new_session(srv.client, "alice")
        alice = srv.client.with_headers(**bearer(session))
        mine = await new_chat(alice)
        user = await join(alice, mine, "alice")
        bob = srv.client.with_headers(**bearer(await new_session(srv.client, "bob")))
        theirs = await new_chat(bob)
        bob_user = await join(bob, theirs, "bob")
        stream = await Stream.open(srv.url, bearer(session))
        await stream.ready()
        await say(bob, theirs, bob_user, "not for alice")
        sent = await say(alice, mine, user, "for alice")
        frame = await stream.next()
        assert frame is not None and frame["type"] == "message" and frame["message"]["message_id"] == sent
        assert frame["chat_id"] == mine
        # a chat of another account cannot be subscribed
        frames = await stream.subscribe({theirs: None})
        assert of_type(frames, "error") == [{"type": "error", "message": "chat-not-found", "chat_id": theirs}]
        # a chat joined while connected is carried from the join's answer on
        member = await join(alice, theirs, "alice too")
        joined = await stream.next()
        assert joined is not None and joined["type"] == "chat_joined", joined
        assert joined["chat"]["chat_id"] == theirs and joined["chat"]["my_user_ids"] == [member], joined
        sent = await say(bob, theirs, bob_user, "now for alice too")
        frame = await stream.next()
        assert frame is not None and frame["message"]["message_id"] == sent
        stream.close()


async def test_auth_by_first_frame_and_refusals(env: dict[str, str]) -> None:
    async with serve_app({**env, "EVENTS_AUTH_TIMEOUT": "0.5"}) as srv:
        session = await new_session(srv.client, "carol")
        carol = srv.client.with_headers(**bearer(session))
        chat = await new_chat(carol)
        user = await join(carol, chat, "carol")
        stream = await Stream.open(srv.url)
        await stream.send({"type": "auth", "session_id": session})
        await stream.ready()
        sent = await say(carol, chat, user, "by frame")
        frame = await stream.next()
        assert frame is not None and frame["message"]["message_id"] == sent
        stream.close()
        refusals = [
            ({"Authorization": "session_id nonsense"}, None, "auth-failed"),
            (bearer("0" * 32), None, "invalid-session-id"),
            ({}, {"type": "auth", "session_id": "0" * 32}, "invalid-session-id"),
            ({}, {"type": "auth", "session_id": "nope"}, "auth-failed"),
            ({}, {"type": "subscribe", "chats": {chat: None}}, "auth-failed"),
            ({}, "not json", "auth-failed"),
            ({}, None, "auth-failed"),  # says nothing: the auth timeout
        ]
        for headers, first, code in refusals:
            stream = await Stream.open(srv.url, headers)
            if first is not None:
                await stream.send(first)
            close_code, frames = await stream.closed()
            assert (close_code, frames) == (4401, [{"type": "error", "message": code}]), (headers, first)
        # logged out: refused; an open stream of it is closed
        stream = await Stream.open(srv.url, bearer(session))
        await stream.ready()
        resp = await carol.post("/v1/auth/logout")
        assert resp.status == 200
        assert await stream.closed() == (4401, [{"type": "error", "message": "invalid-session-id"}])
        stream = await Stream.open(srv.url, bearer(session))
        assert await stream.closed() == (4401, [{"type": "error", "message": "invalid-session-id"}])
