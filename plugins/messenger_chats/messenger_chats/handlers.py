"""HTTP handlers of the chats plugin: chats, members, messages (API.md, "Chats and messages" and
"Conversations")."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from messenger_core import BaseHandler, not_found, parse_uuid

from . import cursor, state
from .conversations import Actor, Conversations
from .errors import chat_not_found, message_not_found, user_not_found
from .schemas import (PAGE_LIMITS, PAGE_WAITS, ChatCreateSchema, MemberCreateSchema, MessageCreateSchema,
                      MessageEditSchema, PageQuerySchema, ReadMarkSchema)
from .store import ChatStore, is_empty_page
from .waiting import waits_of


def _plain_int(text: str | None, low: int, high: int) -> int | None:
    """``text`` as a number when it is 1 to 4 ASCII digits within ``low..high`` (the schema takes those the same
    way), else None."""
    if text is None or not 0 < len(text) <= 4 or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if low <= value <= high else None


class ChatsBaseHandler(BaseHandler):
    """Shared plumbing: the process's store and the caller's account (None with auth off)."""

    @property
    def store(self) -> ChatStore:
        """The process's :class:`ChatStore`."""
        return state.store_of(self.runtime)

    async def account(self) -> uuid.UUID | None:
        """The session's account id, or None when auth is off (then everything is open)."""
        identity = await self.authenticate()
        return None if identity is None else uuid.UUID(identity.account_id)

    @property
    def conversations(self) -> Conversations:
        """The process's :class:`Conversations`."""
        return state.conversations_of(self.runtime)

    def chat_from_path(self, chat_id: str) -> uuid.UUID:
        """The chat id of the path; one that is not a UUID is 404 ``chat-not-found``."""
        chat = parse_uuid(chat_id)
        if chat is None:
            raise chat_not_found()
        return chat

    async def account_required(self) -> uuid.UUID:
        """The session's account; with auth off the endpoint does not exist (404 ``not-found``)."""
        account = await self.account()
        if account is None:
            raise not_found()
        return account

    async def require_in(self, chat: uuid.UUID, account: uuid.UUID | None) -> None:
        """404 ``chat-not-found`` unless ``account`` has a member in ``chat`` (None, auth off: no check)."""
        if account is not None and not await self.store.account_in_chat(chat, account):
            raise chat_not_found()

    async def actor_in(self, chat: uuid.UUID) -> Actor:
        """Who acts in the chat: the session's account, which must be in it (else 404 ``chat-not-found``),
        or with auth off the member named by ``?user_id=`` (maybe None), in a chat that must exist."""
        account = await self.account()
        if account is None:
            if not await self.store.chat_exists(chat):
                raise chat_not_found()
            return Actor(None, parse_uuid(self.get_query_argument("user_id", None)))
        await self.require_in(chat, account)
        return Actor(account)


class ChatsHandler(ChatsBaseHandler):
    """``/v1/chats``: create a chat, list the account's chats."""

    async def get(self) -> None:
        """The chats of the session's account, the most recently active first.
        ---
        summary: List my chats
        description: >
          Every chat where the session's account has a member, the one with the newest message first (a chat
          without messages counts from when the account joined it), each with its newest message that is not
          deleted, the number of unread messages (after the account's read marker, not deleted) and the read
          marker as an iterator (paging from it returns the unread messages). Needs auth; with auth off this
          endpoint does not exist (404 not-found). Costs no scan of any chat's messages.
        tags: [chats]
        responses:
          200:
            description: The chats
            content:
              application/json:
                schema: ChatSummaryList
          401: Unauthorized
          404:
            description: not-found (auth off)
            content:
              application/json:
                schema: Error
          503: DatabaseUnavailable
        """
        account = await self.account_required()
        self.write_json(await self.conversations.chats_of(account))

    async def post(self) -> None:
        """Create a chat.
        ---
        summary: Create a chat
        description: >
          Chat names may repeat. With auth on, the session's account owns the chat, and still joins it with
          POST /v1/chats/{chat_id}/users. An open chat (the default) is joined by anyone who knows its id; a
          private one only by its owner or with an invite (POST /v1/chats/{chat_id}/invites). With auth off there
          are no accounts and every chat is open.
        tags: [chats]
        requestBody:
          required: true
          content:
            application/json:
              schema: ChatCreate
        responses:
          201:
            description: Created
            content:
              application/json:
                schema: ChatCreated
          400:
            description: bad-parameters (body missing, not a JSON object, chat_name not a string of 0..255, or
              private not a boolean)
            content:
              application/json:
                schema: Error
          503: DatabaseUnavailable
        """
        body = self.load_body(ChatCreateSchema)
        chat_id = await self.store.create_chat(body["chat_name"], body["private"], await self.account())
        self.write_json({"chat_id": chat_id.hex}, 201)


class MembersHandler(ChatsBaseHandler):
    """``/v1/chats/{chat_id}/users``: list the members, join a chat as a new member."""

    async def get(self, chat_id: str) -> None:
        """The chat's present members.
        ---
        summary: List a chat's members
        description: >
          The members that have not left or been removed, oldest first. `mine` marks the members of the
          session's account (auth off: the member named by `user_id`, if any). With auth on, a chat the
          account is not in is 404 chat-not-found.
        tags: [chats]
        parameters:
          - ChatId
          - in: query
            name: user_id
            required: false
            schema: {type: string}
            description: With auth off, the acting member (whose entry is `mine`)
        responses:
          200:
            description: The members
            content:
              application/json:
                schema: ChatMemberList
          404: ChatNotFound
          503: DatabaseUnavailable
        """
        chat = self.chat_from_path(chat_id)
        actor = await self.actor_in(chat)
        self.write_json({"users": await self.conversations.members(chat, actor)})

    async def post(self, chat_id: str) -> None:
        """Join a chat: a new member id, even for a name already in the chat.
        ---
        summary: Add a member to a chat
        description: >
          Every call creates a new member (user_id), even for a user name already in the chat.
          With auth on, the member belongs to the session's account, which may then read and post in the chat.
          A private chat is joined only by its owner, an account already in it, or with a valid `invite`;
          anyone else gets 404 chat-not-found, exactly as for a chat that does not exist (an expired or unknown
          invite too). An invite sent to join an open chat is ignored.
        tags: [chats]
        parameters:
          - ChatId
        requestBody:
          required: true
          content:
            application/json:
              schema: ChatMemberCreate
        responses:
          201:
            description: Joined
            content:
              application/json:
                schema: ChatMemberCreated
          400:
            description: bad-parameters (body missing, not a JSON object, user_name not a string of 1..255,
              or invite not a string)
            content:
              application/json:
                schema: Error
          404: ChatNotFound
          503: DatabaseUnavailable
        """
        chat = self.chat_from_path(chat_id)
        body = self.load_body(MemberCreateSchema)
        member_id = await self.conversations.join(chat, body["user_name"], await self.account(), body["invite"])
        if member_id is None:
            raise chat_not_found()
        self.write_json({"user_id": member_id.hex}, 201)


class MessagesHandler(ChatsBaseHandler):
    """``/v1/chats/{chat_id}/messages``: read pages of messages (or long-poll for them), post a message."""

    gone: asyncio.Future[None] | None = None

    async def get(self, chat_id: str) -> None:
        """A page of messages, oldest first, with the iterator to continue or poll from.
        ---
        summary: Read a chat's messages
        description: >
          Messages come oldest first. Without `from` the page starts at the chat's first message; with
          `from` (the `next.iterator` of an earlier page) it continues right after that page, never
          repeating or skipping a message, even while others post. `next.iterator` is always present: after
          the last message returned, or (empty page) the `from` given or the chat's start, so a client
          polls for new messages with it. Deleted messages are left out (an iterator taken before a deletion
          still continues right after its position); `edited_at` is set on edited messages. Pages may come from
          the cache; a cached page is byte-identical to a fresh one, never shows a message's text from before an
          edit or a deleted message once the edit or delete was answered, and is served even while the database
          is down. With auth on, only accounts that have a member in the chat may read it (others get 404
          chat-not-found).
        tags: [chats]
        parameters:
          - ChatId
          - in: query
            name: limit
            required: true
            schema: {type: integer, minimum: 1, maximum: 1000}
            description: Page size
          - in: query
            name: from
            required: false
            schema: {type: string}
            description: The next.iterator of an earlier page; absent means the chat's start
          - in: query
            name: wait
            required: false
            schema: {type: integer, minimum: 0, maximum: 60, default: 0}
            description: >
              Long-poll: when the page would be empty, hold the request up to this many seconds until a
              message after `from` is committed (in any worker), then answer the page; on timeout (or when the
              server shuts down) the empty page with next.iterator equal to `from`. Holds no database connection.
        responses:
          200:
            description: A page
            content:
              application/json:
                schema: ChatMessagePage
          400:
            description: bad-parameters (limit missing, not an integer, or outside 1..1000; wait not an integer
              of 0..60), bad-cursor (an
              iterator that is malformed, of another chat, or beyond the chat's last message)
            content:
              application/json:
                schema: Error
          404: ChatNotFound
          503:
            description: database-unavailable (and the page is not in the cache)
            content:
              application/json:
                schema: Error
        """
        chat = self.chat_from_path(chat_id)
        query = self._page_query()
        after = 0 if query["from_"] is None else cursor.decode(query["from_"], chat)
        account = await self.account()
        await self.require_in(chat, account)
        waits = waits_of(self.runtime, self.store) if query["wait"] else None
        if waits is None:
            body = await self.store.page(chat, after, query["limit"])
        else:  # known empty: no read before waiting
            body = waits.empty_page(chat, after) or await waits.page(chat, after, query["limit"])
        if waits is not None and is_empty_page(body):
            self.gone = asyncio.get_running_loop().create_future()
            body = await waits.wait_page(chat, after, query["limit"], query["wait"], body, self.gone)
        self.write_json(body)

    def _page_query(self) -> dict[str, Any]:
        """The page's query: a plain one (``limit`` and ``wait`` in ASCII digits, in range) read as it is, since
        every long-poll sends one; anything else through :class:`PageQuerySchema` (which then decides)."""
        limit = _plain_int(self.get_query_argument("limit", None), *PAGE_LIMITS)
        wait_text = self.get_query_argument("wait", None)
        wait = 0 if wait_text is None else _plain_int(wait_text, *PAGE_WAITS)
        if limit is None or wait is None:
            return self.load_query(PageQuerySchema)
        return {"limit": limit, "from_": self.get_query_argument("from", None), "wait": wait}

    def on_connection_close(self) -> None:
        if self.gone is not None and not self.gone.done():
            self.gone.set_result(None)  # a held long-poll stops waiting for a client that hung up
        super().on_connection_close()

    async def post(self, chat_id: str) -> None:
        """Post a message as one of the chat's members.
        ---
        summary: Post a message
        description: >
          Checks, in this order: chat_id not a UUID (404 chat-not-found); user_id missing or not a UUID (404
          user-not-found); bad body (400); unknown chat (404 chat-not-found); user_id not a member of this chat
          (404 user-not-found). With auth on, a chat the session's account has not joined is 404 chat-not-found
          and a user_id that is not one of the account's members of the chat is 404 user-not-found; the account's
          read marker moves past the new message. A member that left or was removed is 404 user-not-found.
          Other query parameters are ignored.
        tags: [chats]
        parameters:
          - ChatId
          - in: query
            name: user_id
            required: true
            schema: {type: string}
            description: The posting chat member's id; missing, not a UUID or not a member is 404 user-not-found
        requestBody:
          required: true
          content:
            application/json:
              schema: ChatMessageCreate
        responses:
          201:
            description: Posted
            content:
              application/json:
                schema: ChatMessageCreated
          400:
            description: bad-parameters (body missing, not a JSON object, or message not a string of 1..65536)
            content:
              application/json:
                schema: Error
          404:
            description: chat-not-found, user-not-found
            content:
              application/json:
                schema: Error
          503: DatabaseUnavailable
        """
        chat = self.chat_from_path(chat_id)
        member_id = parse_uuid(self.get_query_argument("user_id", None))
        if member_id is None:
            raise user_not_found()
        body = self.load_body(MessageCreateSchema)
        account = await self.account()
        await self.require_in(chat, account)
        member = await self.store.member(chat, member_id)
        if member is None or (account is not None and member.account_id != account):
            if account is None and not await self.store.chat_exists(chat):
                raise chat_not_found()
            raise user_not_found()
        message_id = await self.store.post_message(chat, member_id, body["message"])
        if message_id is None:
            raise chat_not_found()
        self.write_json({"message_id": message_id.hex}, 201)


class MemberHandler(ChatsBaseHandler):
    """``/v1/chats/{chat_id}/users/{user_id}``: leave a chat, or remove a member (owner)."""

    async def delete(self, chat_id: str, user_id: str) -> None:
        """Leave the chat, or remove a member.
        ---
        summary: Leave a chat or remove a member
        description: >
          An account removes its own member (leaves); the chat's owner removes anyone. With auth off a member
          leaves only itself: `user_id` in the query must be the member of the path. Messages stay. An account
          whose last member of the chat is gone no longer reads, posts, searches or streams there, at once in
          every worker.
        tags: [chats]
        parameters:
          - ChatId
          - in: path
            name: user_id
            required: true
            schema: {type: string}
            description: The member to remove
          - in: query
            name: user_id
            required: false
            schema: {type: string}
            description: With auth off, the acting member (the same as the path's)
        responses:
          204:
            description: Gone
          404:
            description: chat-not-found (no such chat, or with auth on one the account is not in),
              user-not-found (not a present member of the chat, or one the caller may not remove)
            content:
              application/json:
                schema: Error
          503: DatabaseUnavailable
        """
        chat = self.chat_from_path(chat_id)
        member = parse_uuid(user_id)
        actor = await self.actor_in(chat)
        if member is None:
            raise user_not_found()
        await self.conversations.leave(chat, member, actor)
        self.write_empty(204)


class InvitesHandler(ChatsBaseHandler):
    """``/v1/chats/{chat_id}/invites``: make an invite to the chat."""

    async def post(self, chat_id: str) -> None:
        """A new invite.
        ---
        summary: Invite to a chat
        description: >
          Any member's account makes one: an opaque token of 192 random bits that joins the chat (POST
          /v1/chats/{chat_id}/users with `invite`) any number of times for CHAT_INVITE_TTL seconds (default 7
          days). Needs auth; with auth off this endpoint does not exist (404 not-found).
        tags: [chats]
        parameters:
          - ChatId
        responses:
          201:
            description: Made
            content:
              application/json:
                schema: ChatInvite
          401: Unauthorized
          404: ChatNotFoundOrNoAccount
          503: DatabaseUnavailable
        """
        chat = self.chat_from_path(chat_id)
        account = await self.account_required()
        await self.require_in(chat, account)
        self.write_json({"invite": await self.conversations.create_invite(chat, account)}, 201)


class ReadHandler(ChatsBaseHandler):
    """``/v1/chats/{chat_id}/read``: move the account's read marker forward."""

    async def post(self, chat_id: str) -> None:
        """Mark the chat read up to an iterator.
        ---
        summary: Mark a chat read
        description: >
          Moves the account's read marker to the iterator given (a `next.iterator` of a page), forward only: an
          iterator before the marker changes nothing. Needs auth; with auth off this endpoint does not exist
          (404 not-found).
        tags: [chats]
        parameters:
          - ChatId
        requestBody:
          required: true
          content:
            application/json:
              schema: ChatReadMark
        responses:
          204:
            description: Marked (or already read further)
          400:
            description: bad-parameters (body missing, not a JSON object, iterator not a string), bad-cursor
              (an iterator that is malformed, of another chat, or beyond the chat's last message)
            content:
              application/json:
                schema: Error
          401: Unauthorized
          404: ChatNotFoundOrNoAccount
          503: DatabaseUnavailable
        """
        chat = self.chat_from_path(chat_id)
        account = await self.account_required()
        body = self.load_body(ReadMarkSchema)
        await self.require_in(chat, account)
        seq = cursor.decode(body["iterator"], chat)
        if not await self.conversations.mark_read(chat, account, seq):
            raise chat_not_found()
        self.write_empty(204)


class MessageHandler(ChatsBaseHandler):
    """``/v1/chats/{chat_id}/messages/{message_id}``: edit or delete one's own message."""

    def message_from_path(self, message_id: str) -> uuid.UUID:
        """The message id of the path; one that is not a UUID is 404 ``message-not-found``."""
        message = parse_uuid(message_id)
        if message is None:
            raise message_not_found()
        return message

    async def patch(self, chat_id: str, message_id: str) -> None:
        """Edit one's own message.
        ---
        summary: Edit a message
        description: >
          Only the author's account (auth off: `user_id` the author member) may. Answers the message exactly as
          a page now shows it (same `created_at`, `edited_at` set); every page read after this answer, cached
          or not, in any worker, shows the new text, and a search started after it matches the new text.
        tags: [chats]
        parameters:
          - ChatId
          - MessageId
          - AuthorMemberId
        requestBody:
          required: true
          content:
            application/json:
              schema: ChatMessageEdit
        responses:
          200:
            description: Edited
            content:
              application/json:
                schema: ChatMessage
          400:
            description: bad-parameters (body missing, not a JSON object, or message not a string of 1..65536)
            content:
              application/json:
                schema: Error
          404: MessageNotFound
          503: DatabaseUnavailable
        """
        chat = self.chat_from_path(chat_id)
        message = self.message_from_path(message_id)
        body = self.load_body(MessageEditSchema)
        actor = await self.actor_in(chat)
        self.write_json(await self.conversations.edit(chat, message, body["message"], actor))

    async def delete(self, chat_id: str, message_id: str) -> None:
        """Delete one's own message.
        ---
        summary: Delete a message
        description: >
          Only the author's account (auth off: `user_id` the author member) may. Once answered, the message is
          in no page (cached or not, in any worker), in no search started after, and in no stream replay; paging
          from an iterator taken before goes on right after its position.
        tags: [chats]
        parameters:
          - ChatId
          - MessageId
          - AuthorMemberId
        responses:
          204:
            description: Deleted
          404:
            description: chat-not-found (no such chat, or with auth on one the account is not in),
              message-not-found (no such message in the chat, already deleted, or not the caller's)
            content:
              application/json:
                schema: Error
          503: DatabaseUnavailable
        """
        chat = self.chat_from_path(chat_id)
        message = self.message_from_path(message_id)
        actor = await self.actor_in(chat)
        await self.conversations.delete(chat, message, actor)
        self.write_empty(204)


default_handlers = [
    (r"/v1/chats", ChatsHandler),
    (r"/v1/chats/(?P<chat_id>[^/]+)/users", MembersHandler),
    (r"/v1/chats/(?P<chat_id>[^/]+)/users/(?P<user_id>[^/]+)", MemberHandler),
    (r"/v1/chats/(?P<chat_id>[^/]+)/invites", InvitesHandler),
    (r"/v1/chats/(?P<chat_id>[^/]+)/read", ReadHandler),
    (r"/v1/chats/(?P<chat_id>[^/]+)/messages", MessagesHandler),
    (r"/v1/chats/(?P<chat_id>[^/]+)/messages/(?P<message_id>[^/]+)", MessageHandler),
]
