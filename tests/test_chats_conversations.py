"""Conversations (API.md): owners, private chats and invites, the chat list with unread counts, read markers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg import sql
import pytest

from chats_support import chats_server, join, new_chat, page, read_page, say, table_counts
from conversations_support import (WITH_SEARCH, account, auth_server, create, enter, invite_to, mark, member_of,
                                   my_chats, texts_of, unread_of)
from messenger_chats import api as chats_api
from messenger_chats.conversations import CHANGES_AFTER, LIST_CHATS, invite_hash
from search_support import read_results, start_search, wait_status
from support import AppServer, Client, assert_error, conninfo


@pytest.fixture
async def srv(env: dict[str, str]) -> AsyncIterator[AppServer]:
    async with auth_server(env, plugins=WITH_SEARCH) as server:
        yield server


async def expire_invites(database: str) -> None:
    """Move every invite's expiry into the past (as if CHAT_INVITE_TTL had passed)."""
    async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as conn:
        await conn.execute("UPDATE chat_invites SET expires_at = now() - interval '1 second'")


async def test_a_private_chat_is_404_to_everyone_without_an_invite(srv: AppServer, database: str) -> None:
    alice = await account(srv.client, "alice")
    mallory = await account(srv.client, "mallory")
    chat = await create(alice, "secret", private=True)
    owner_member = await member_of(alice, chat, "alice")  # the owner joins without an invite
    await say(alice, chat, owner_member, "axolotl plans")
    missing = uuid.uuid4().hex
    before = await table_counts(database)

    # a non-member who knows the id: join, read, post, invite, search all as for a chat that does not exist
    for target in (chat, missing):
        assert_error(await enter(mallory, target, "mallory"), 404, "chat-not-found")
        assert_error(await enter(mallory, target, "mallory", invite="guessed-" + "x" * 30), 404, "chat-not-found")
        assert_error(await page(mallory, target, 10), 404, "chat-not-found")
        assert_error(await mallory.post(f"/v1/chats/{target}/messages?user_id={owner_member}", {"message": "x"}),
                     404, "chat-not-found")
        assert_error(await mallory.post(f"/v1/chats/{target}/invites"), 404, "chat-not-found")
        assert_error(await mallory.get(f"/v1/chats/{target}/users"), 404, "chat-not-found")
        assert_error(await mark(mallory, target, "A" * 38), 404, "chat-not-found")
    task = await start_search(mallory, "axolotl")
    await wait_status(mallory, task)
    assert (await read_results(mallory, task))[0] == []
    assert await my_chats(mallory) == []
    assert await table_counts(database) == before  # nothing was stored for any refused request

    # with an invite: joins, reads, posts, finds
    invite = await invite_to(alice, chat)
    assert len(invite) >= 22  # at least 128 bits in URL-safe base64
    mallory_member = await member_of(mallory, chat, "mallory", invite)
    await say(mallory, chat, mallory_member, "hello")
    assert await texts_of(mallory, chat) == ["axolotl plans", "hello"]
    task = await start_search(mallory, "axolotl")
    await wait_status(mallory, task)
    assert [r["text"] for r in (await read_results(mallory, task))[0]] == ["axolotl plans"]
    # an account already in the chat adds more members without one; the invite is usable again
    await member_of(mallory, chat, "mallory again")
    bob = await account(srv.client, "bob")
    await member_of(bob, chat, "bob", invite)
    # an invite opens only its own chat
    other = await create(alice, "other secret", private=True)
    assert_error(await enter(bob, other, "bob", invite), 404, "chat-not-found")

    # an expired invite is 404, exactly like no invite
    carol = await account(srv.client, "carol")
    await expire_invites(database)
    assert_error(await enter(carol, chat, "carol", invite), 404, "chat-not-found")
    assert_error(await page(carol, chat, 10), 404, "chat-not-found")
    # only a hash of the token is stored, with an expiry CHAT_INVITE_TTL (7 days) after its creation
    fresh = await invite_to(bob, chat)
    async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as conn:
        cur = await conn.execute("SELECT token_hash, expires_at - now() > interval '6 days 23 hours' "
                                 "AND expires_at - now() <= interval '7 days' FROM chat_invites "
                                 "WHERE token_hash = %s", (invite_hash(fresh),))
        stored, week = await cur.fetchone()
        cur = await conn.execute("SELECT count(*) FROM chat_invites WHERE token_hash = %s", (fresh.encode(),))
        assert (await cur.fetchone())[0] == 0
    assert stored == invite_hash(fresh) and week
    await member_of(carol, chat, "carol", fresh)


async def test_open_chats_ignore_invites_and_bad_bodies_are_400(srv: AppServer, database: str) -> None:
    alice = await account(srv.client, "alice")
    bob = await account(srv.client, "bob")
    chat = await create(alice, "open")
    await member_of(bob, chat, "bob", invite="not-a-real-invite")  # ignored for an open chat
    before = await table_counts(database)
    for body in ({"chat_name": "x", "private": "yes"}, {"chat_name": "x", "private": 1},
                 {"chat_name": "x", "private": None}):
        assert_error(await alice.post("/v1/chats", body), 400, "bad-parameters")
    for body in ({"user_name": "x", "invite": 5}, {"user_name": "x", "invite": ""}):
        assert_error(await alice.post(f"/v1/chats/{chat}/users", body), 400, "bad-parameters")
    assert await table_counts(database) == before
    summaries = {s["chat_id"]: s for s in await my_chats(alice)}
    assert summaries == {}  # the owner has not joined its chat yet
    await member_of(alice, chat, "alice")
    (mine,) = await my_chats(alice)
    assert mine["owner"] is True and mine["private"] is False and mine["chat_name"] == "open"
    (theirs,) = await my_chats(bob)
    assert theirs["owner"] is False


async def test_with_auth_off_private_is_stored_and_account_endpoints_do_not_exist(env: dict[str, str]) -> None:
    async with chats_server(env) as server:
        client: Client = server.client
        chat = await create(client, "course", private=True)  # no accounts: every chat is open
        user = await join(client, chat)
        await say(client, chat, user, "hi")
        _, iterator = await read_page(client, chat, 10)
        assert_error(await client.get("/v1/chats"), 404, "not-found")
        assert_error(await client.post(f"/v1/chats/{chat}/invites"), 404, "not-found")
        assert_error(await mark(client, chat, iterator), 404, "not-found")
        other = await new_chat(client)
        assert (await page(client, other, 1)).status == 200


async def test_the_list_orders_by_activity_and_counts_unread_messages(srv: AppServer) -> None:
    alice = await account(srv.client, "alice")
    bob = await account(srv.client, "bob")
    first = await create(alice, "first")
    second = await create(bob, "second")
    quiet = await create(alice, "quiet")
    a1, b1 = await member_of(alice, first, "a"), await member_of(bob, first, "b")
    b2, a2 = await member_of(bob, second, "b"), await member_of(alice, second, "a")
    a_quiet = await member_of(alice, quiet, "a")

    for n in range(3):
        await say(alice, first, a1, f"a{n}")  # posting moves alice's own marker past her message
    for n in range(2):
        await say(bob, first, b1, f"b{n}")
    await say(bob, second, b2, "s0")
    assert await unread_of(alice) == {first: 2, second: 1, quiet: 0}
    assert await unread_of(bob) == {first: 0, second: 0}  # his posts moved his marker past alice's too
    # most recently active first: second had the newest message; quiet (no messages) counts from the join
    assert [s["chat_id"] for s in await my_chats(alice)] == [second, first, quiet]
    summary = {s["chat_id"]: s for s in await my_chats(alice)}
    assert summary[first]["last_message"]["text"] == "b1" and summary[first]["last_message"]["edited_at"] is None
    assert summary[first]["my_user_ids"] == [a1] and summary[second]["my_user_ids"] == [a2]
    assert summary[quiet]["last_message"] is None and summary[quiet]["my_user_ids"] == [a_quiet]
    assert summary[second]["owner"] is False and summary[first]["owner"] is True

    # paging from read_iterator returns exactly the unread messages
    unread = await texts_of(alice, first, 10, summary[first]["read_iterator"])
    assert unread == ["b0", "b1"]

    # forward moves, backward changes nothing
    messages, after_b0 = await read_page(alice, first, 4)
    assert [m["text"] for m in messages] == ["a0", "a1", "a2", "b0"]
    assert (await mark(alice, first, after_b0)).status == 204
    assert (await unread_of(alice))[first] == 1
    _, after_a0 = await read_page(alice, first, 1)
    assert (await mark(alice, first, after_a0)).status == 204  # older than the marker: nothing happens
    assert (await unread_of(alice))[first] == 1
    _, start = await read_page(alice, first, 10)
    assert (await mark(alice, first, start)).status == 204
    assert (await unread_of(alice))[first] == 0
    await say(alice, first, a1, "a3")
    assert (await unread_of(alice))[first] == 0 and (await unread_of(bob))[first] == 1  # each marker is its own
    # a new post by alice moves her marker; bob's count grows
    await say(alice, second, a2, "reply")
    assert (await unread_of(alice))[second] == 0 and (await unread_of(bob))[second] == 1
    assert [s["chat_id"] for s in await my_chats(bob)] == [second, first]

    # a second member of the same account shares the account's marker and appears in my_user_ids
    a1b = await member_of(alice, first, "a again")
    assert {s["chat_id"]: s for s in await my_chats(alice)}[first]["my_user_ids"] == [a1, a1b]

    # bad markers: 400, nothing moves
    assert_error(await mark(alice, first, "garbage"), 400, "bad-cursor")
    _, other_chat_iterator = await read_page(alice, second, 1)
    assert_error(await mark(alice, first, other_chat_iterator), 400, "bad-cursor")
    assert_error(await alice.post(f"/v1/chats/{first}/read", {"iterator": 5}), 400, "bad-parameters")
    assert_error(await alice.post(f"/v1/chats/{first}/read", {}), 400, "bad-parameters")
    assert (await unread_of(alice))[first] == 0
    assert_error(await srv.client.get("/v1/chats"), 401, "auth-failed")


async def test_the_chat_list_reads_no_chat_s_messages(srv: AppServer, database: str) -> None:
    alice = await account(srv.client, "alice")
    chats = [await create(alice, f"c{n}") for n in range(3)]
    for chat in chats:
        await member_of(alice, chat, "a")
    async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as conn:
        # 20,000 messages per chat (by SQL, as the bench does), so that a scan would be visible and costly
        for chat in chats:
            await conn.execute(
                "WITH c AS (UPDATE chats SET last_seq = 20000 WHERE id = %(chat)s RETURNING id) "
                "INSERT INTO messages (id, chat_id, seq, member_id, text, created_at) "
                "SELECT gen_random_uuid(), %(chat)s, n, (SELECT id FROM chat_members WHERE chat_id = %(chat)s), "
                "'m' || n, now() + n * interval '1 ms' FROM generate_series(1, 20000) AS n",
                {"chat": uuid.UUID(chat)})
        await conn.execute("ANALYZE")
        cur = await conn.execute("SELECT DISTINCT account_id FROM chat_accounts")
        (account_id,) = await cur.fetchone()
        cur = await conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + LIST_CHATS, {"account": account_id})
        plan = (await cur.fetchone())[0][0]
    assert all(s["unread"] == 20000 for s in await my_chats(alice))

    nodes = []

    def walk(node: dict, parents: tuple[str, ...]) -> None:
        nodes.append((node, parents))
        for child in node.get("Plans", []):
            walk(child, parents + (node["Node Type"],))
    walk(plan["Plan"], ())
    on_messages = [(node, parents) for node, parents in nodes if node.get("Relation Name") == "messages"]
    assert on_messages, plan
    for node, parents in on_messages:
        # an index scan backward on UNIQUE (chat_id, seq) under a LIMIT 1: one row per chat
        assert node["Node Type"] == "Index Scan" and node["Index Name"] == "messages_chat_seq_key", node
        assert node["Scan Direction"] == "Backward" and "Limit" in parents, node
        assert node["Actual Rows"] <= 1, node


async def test_the_changes_after_a_marker_read_no_chat_s_messages(srv: AppServer, database: str) -> None:
    """What a stream reads after a resync: the edits and deletes after the change marker it knew, in change
    order, through the index of changed messages: never a scan of the chat's 20,000 messages."""
    alice = await account(srv.client, "alice")
    chat = await create(alice, "long")
    user = await member_of(alice, chat, "a")
    async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as conn:
        await conn.execute(
            "WITH c AS (UPDATE chats SET last_seq = 20000 WHERE id = %(chat)s RETURNING id) "
            "INSERT INTO messages (id, chat_id, seq, member_id, text, created_at) "
            "SELECT gen_random_uuid(), %(chat)s, n, %(user)s, 'm' || n, now() + n * interval '1 ms' "
            "FROM generate_series(1, 20000) AS n", {"chat": uuid.UUID(chat), "user": uuid.UUID(user)})
        cur = await conn.execute("SELECT id FROM messages WHERE chat_id = %s AND seq IN (10, 500, 19000, 19999) "
                                 "ORDER BY seq", (uuid.UUID(chat),))
        m10, m500, m19000, m19999 = [row[0].hex for row in await cur.fetchall()]
    await changes_in_order(srv, alice, chat, (m10, m500, m19000, m19999))
    chat_id = uuid.UUID(chat)
    ((_, base),) = (await chats_api.heads(srv.runtime.db, [chat_id])).values()
    for plan in await changes_plans(database, {"chat": chat_id, "since": base - 5, "upto": 19998, "limit": 100}):
        on_messages = [node for node in plan_nodes(plan["Plan"]) if node.get("Relation Name") == "messages"]
        assert len(on_messages) == 1, plan
        (node,) = on_messages
        # the changed messages only (4 after the marker, one of them beyond position 19998), never the 20,000
        assert node["Node Type"] == "Index Scan" and node["Index Name"] == "messages_changed_idx", node
        assert node["Actual Rows"] + node.get("Rows Removed by Filter", 0) <= 4, node


async def changes_in_order(srv: AppServer, alice: Client, chat: str, messages: tuple[str, str, str, str]) -> None:
    """Edit and delete some of the chat's messages; ``changes_after`` lists them in change order, each once."""
    m10, m500, m19000, m19999 = messages
    db, chat_id = srv.runtime.db, uuid.UUID(chat)
    ((_, base),) = (await chats_api.heads(db, [chat_id])).values()
    for message, text in ((m500, "first"), (m19999, "beyond upto"), (m10, "second"), (m500, "third")):
        resp = await alice.request("PATCH", f"/v1/chats/{chat}/messages/{message}", {"message": text})
        assert resp.status == 200, resp
    assert (await alice.request("DELETE", f"/v1/chats/{chat}/messages/{m19000}")).status == 204

    def listed(found: tuple[int, list[Any]] | None) -> tuple[int, list[tuple[int, str, str | None]]]:
        assert found is not None
        return found[0], [(changed, mid.hex, None if msg is None else msg["text"]) for changed, mid, msg in found[1]]
    # each message once, at its last change, in change order; none after position 19998
    assert listed(await chats_api.changes_after(db, chat_id, base, 19998, 100)) == (
        base + 5, [(base + 3, m10, "second"), (base + 4, m500, "third"), (base + 5, m19000, None)])
    # a page at a time: after the last one read
    assert listed(await chats_api.changes_after(db, chat_id, base, 19998, 2))[1] == [
        (base + 3, m10, "second"), (base + 4, m500, "third")]
    assert listed(await chats_api.changes_after(db, chat_id, base + 4, 19998, 2)) == (
        base + 5, [(base + 5, m19000, None)])
    assert listed(await chats_api.changes_after(db, chat_id, base + 5, 20000, 100)) == (base + 5, [])
    assert await chats_api.changes_after(db, uuid.uuid4(), 0, 10, 100) is None


def plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    """A plan's nodes, this one first."""
    return [node] + [found for child in node.get("Plans", []) for found in plan_nodes(child)]


async def changes_plans(database: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """EXPLAIN ANALYZE of CHANGES_AFTER: its plan for these parameters, and the generic plan of a prepared
    statement (the parameters unknown), which must use the index too."""
    async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as conn:
        await conn.execute("ANALYZE messages")
        cur = await conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + CHANGES_AFTER, params)
        custom = (await cur.fetchone())[0][0]
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        prepared = CHANGES_AFTER
        for n, name in enumerate(params, 1):
            prepared = prepared.replace(f"%({name})s", f"${n}")
        await conn.execute("PREPARE changes_after (uuid, bigint, bigint, bigint) AS " + prepared)
        cur = await conn.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE changes_after ({})").format(
            sql.SQL(", ").join(sql.Literal(value) for value in params.values())))
        generic = (await cur.fetchone())[0][0]
    return [custom, generic]
