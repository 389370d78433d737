"""HTTP handlers of the chats plugin: chats, members, messages (API.md, "Chats and messages")."""

from __future__ import annotations

import uuid

from messenger_core import BaseHandler, parse_uuid

from . import cursor, state
from .errors import chat_not_found, user_not_found
from .schemas import ChatCreateSchema, MemberCreateSchema, MessageCreateSchema, PageQuerySchema
from .store import ChatStore


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

    def chat_from_path(self, chat_id: str) -> uuid.UUID:
        """The chat id of the path; one that is not a UUID is 404 ``chat-not-found``."""
        chat = parse_uuid(chat_id)
        if chat is None:
            raise chat_not_found()
        return chat


class ChatsHandler(ChatsBaseHandler):
    """``/v1/chats``: create a chat."""

    async def post(self) -> None:
        """Create a chat.
        ---
        summary: Create a chat
        description: >
          Chat names may repeat. With auth on, the creator still joins it with POST /v1/chats/{chat_id}/users.
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
            description: bad-parameters (body missing, not a JSON object, or chat_name not a string of 0..255)
            content:
              application/json:
                schema: Error
          503: DatabaseUnavailable
        """
        body = self.load_body(ChatCreateSchema)
        chat_id = await self.store.create_chat(body["chat_name"])
        self.write_json({"chat_id": chat_id.hex}, 201)


class MembersHandler(ChatsBaseHandler):
    """``/v1/chats/{chat_id}/users``: join a chat as a new member."""

    async def post(self, chat_id: str) -> None:
        """Join a chat: a new member id, even for a name already in the chat.
        ---
        summary: Add a member to a chat
        description: >
          Every call creates a new member (user_id), even for a user name already in the chat.
          With auth on, the member belongs to the session's account, which may then read and post in the chat.
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
            description: bad-parameters (body missing, not a JSON object, or user_name not a string of 1..255)
            content:
              application/json:
                schema: Error
          404: ChatNotFound
          503: DatabaseUnavailable
        """
        chat = self.chat_from_path(chat_id)
        body = self.load_body(MemberCreateSchema)
        member_id = await self.store.add_member(chat, body["user_name"], await self.account())
        if member_id is None:
            raise chat_not_found()
        self.write_json({"user_id": member_id.hex}, 201)


class MessagesHandler(ChatsBaseHandler):
    """``/v1/chats/{chat_id}/messages``: read pages of messages, post a message."""

    async def get(self, chat_id: str) -> None:
        """A page of messages, oldest first, with the iterator to continue or poll from.
        ---
        summary: Read a chat's messages
        description: >
          Messages come oldest first. Without `from` the page starts at the chat's first message; with
          `from` (the `next.iterator` of an earlier page) it continues right after that page, never
          repeating or skipping a message, even while others post. `next.iterator` is always present: after
          the last message returned, or (empty page) the `from` given or the chat's start, so a client
          polls for new messages with it. Pages may come from the cache; a cached page is byte-identical to a
          fresh one, and is served even while the database is down. With auth on, only accounts that
          joined the chat may read it (others get 404 chat-not-found).
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
        responses:
          200:
            description: A page
            content:
              application/json:
                schema: ChatMessagePage
          400:
            description: bad-parameters (limit missing, not an integer, or outside 1..1000), bad-cursor (an
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
        query = self.load_query(PageQuerySchema)
        after = 0 if query["from_"] is None else cursor.decode(query["from_"], chat)
        account = await self.account()
        if account is not None and not await self.store.account_in_chat(chat, account):
            raise chat_not_found()
        self.write_json(await self.store.page(chat, after, query["limit"]))

    async def post(self, chat_id: str) -> None:
        """Post a message as one of the chat's members.
        ---
        summary: Post a message
        description: >
          Checks, in this order: chat_id not a UUID (404 chat-not-found); user_id missing or not a UUID (404
          user-not-found); bad body (400); unknown chat (404 chat-not-found); user_id not a member of this chat
          (404 user-not-found). With auth on, a chat the session's account has not joined is 404 chat-not-found
          and a user_id that is not one of the account's members of the chat is 404 user-not-found.
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
        if account is not None and not await self.store.account_in_chat(chat, account):
            raise chat_not_found()
        member = await self.store.member(member_id)
        if member is None or member.chat_id != chat or (account is not None and member.account_id != account):
            if account is None and not await self.store.chat_exists(chat):
                raise chat_not_found()
            raise user_not_found()
        message_id = await self.store.post_message(chat, member_id, body["message"])
        if message_id is None:
            raise chat_not_found()
        self.write_json({"message_id": message_id.hex}, 201)


default_handlers = [
    (r"/v1/chats", ChatsHandler),
    (r"/v1/chats/(?P<chat_id>[^/]+)/users", MembersHandler),
    (r"/v1/chats/(?P<chat_id>[^/]+)/messages", MessagesHandler),
]
