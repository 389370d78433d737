"""Request and response schemas of the chats plugin (they validate input and feed OpenAPI)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from messenger_core import storable_text


class StrictBoolean(fields.Boolean):
    """A JSON boolean and nothing else (marshmallow's Boolean also takes "yes", 1, "on"...)."""

    def _deserialize(self, value: object, attr: str | None, data: object, **kwargs: object) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class ChatCreateSchema(Schema):
    """Body of ``POST /v1/chats``."""

    chat_name = fields.String(required=True, validate=[validate.Length(min=0, max=255), storable_text],
                              metadata={"description": "Any name, 0 to 255 characters; names may repeat"})
    private = StrictBoolean(load_default=False, metadata={
        "description": "A private chat is joined only by its owner or with an invite (auth on); default false"})


class ChatCreatedSchema(Schema):
    """Answer of ``POST /v1/chats``."""

    chat_id = fields.String(required=True, metadata={"description": "The new chat's id (32 hex characters)"})


class MemberCreateSchema(Schema):
    """Body of ``POST /v1/chats/{chat_id}/users``."""

    user_name = fields.String(required=True, validate=[validate.Length(min=1, max=255), storable_text],
                              metadata={"description": "Display name, 1 to 255 characters; may repeat"})
    invite = fields.String(load_default=None, validate=validate.Length(min=1, max=255), metadata={
        "description": "An invite to the private chat (ignored for an open chat)"})


class MemberCreatedSchema(Schema):
    """Answer of ``POST /v1/chats/{chat_id}/users``."""

    user_id = fields.String(required=True,
                            metadata={"description": "The new chat member's id (32 hex characters)"})


class MessageCreateSchema(Schema):
    """Body of ``POST /v1/chats/{chat_id}/messages``."""

    message = fields.String(required=True, validate=[validate.Length(min=1, max=65536), storable_text],
                            metadata={"description": "The text, 1 to 65536 characters"})


class MessageCreatedSchema(Schema):
    """Answer of ``POST /v1/chats/{chat_id}/messages``."""

    message_id = fields.String(required=True, metadata={"description": "The new message's id (32 hex characters)"})


PAGE_LIMITS = (1, 1000)  # a page's ``limit``, lowest and highest
PAGE_WAITS = (0, 60)  # a long-poll's ``wait`` in seconds, lowest and highest


class PageQuerySchema(Schema):
    """Query of ``GET /v1/chats/{chat_id}/messages`` (documented by hand in the handler)."""

    limit = fields.Integer(required=True, strict=False, validate=validate.Range(*PAGE_LIMITS),
                           metadata={"description": f"Page size, {PAGE_LIMITS[0]} to {PAGE_LIMITS[1]}"})
    from_ = fields.String(data_key="from", load_default=None,
                          metadata={"description": "next.iterator of the previous page; absent: the chat's start"})
    wait = fields.Integer(load_default=0, strict=False, validate=validate.Range(*PAGE_WAITS),
                          metadata={"description": "Seconds to hold an empty page for a new message, "
                                                   f"{PAGE_WAITS[0]} to {PAGE_WAITS[1]}"})


class MessageSchema(Schema):
    """One message of a page."""

    message_id = fields.String(required=True, metadata={"description": "32 hex characters"})
    user_id = fields.String(required=True, metadata={"description": "The author (chat member id)"})
    text = fields.String(required=True)
    created_at = fields.String(required=True, metadata={
        "format": "date-time", "description": "When it was stored, ISO 8601 in UTC"})
    edited_at = fields.String(required=True, allow_none=True, metadata={
        "format": "date-time", "description": "When its text was last edited, ISO 8601 in UTC; null: never"})


class ChatNextSchema(Schema):
    """Where the next page starts (in the spec as ``ChatNext``, through the page that nests it)."""

    iterator = fields.String(required=True, metadata={
        "description": "Opaque position after the last message returned; pass it as `from` to continue or "
                       "to poll for newer messages"})


class MessagePageSchema(Schema):
    """Answer of ``GET /v1/chats/{chat_id}/messages``: messages oldest first and the next position."""

    messages = fields.List(fields.Nested(MessageSchema), required=True)
    next = fields.Nested(ChatNextSchema, required=True)


class ChatSummarySchema(Schema):
    """One chat of ``GET /v1/chats``."""

    chat_id = fields.String(required=True, metadata={"description": "32 hex characters"})
    chat_name = fields.String(required=True)
    private = fields.Boolean(required=True)
    owner = fields.Boolean(required=True, metadata={"description": "Whether the session's account owns it"})
    my_user_ids = fields.List(fields.String(), required=True, metadata={
        "description": "The account's members of the chat, oldest first"})
    last_message = fields.Nested(MessageSchema, required=True, allow_none=True, metadata={
        "description": "The newest message not deleted; null: none"})
    unread = fields.Integer(required=True, metadata={
        "description": "Messages after the account's read marker that are not deleted"})
    read_iterator = fields.String(required=True, metadata={
        "description": "The read marker; paging from it returns the unread messages"})


class ChatListSchema(Schema):
    """Answer of ``GET /v1/chats``: the account's chats, the most recently active first."""

    chats = fields.List(fields.Nested(ChatSummarySchema), required=True)


class MemberSchema(Schema):
    """One member of ``GET /v1/chats/{chat_id}/users``."""

    user_id = fields.String(required=True, metadata={"description": "The member's id (32 hex characters)"})
    user_name = fields.String(required=True)
    mine = fields.Boolean(required=True, metadata={
        "description": "Whether it is the caller's (a member of the session's account; auth off: the user_id given)"})


class MemberListSchema(Schema):
    """Answer of ``GET /v1/chats/{chat_id}/users``: the chat's present members, oldest first."""

    users = fields.List(fields.Nested(MemberSchema), required=True)


class InviteSchema(Schema):
    """Answer of ``POST /v1/chats/{chat_id}/invites``."""

    invite = fields.String(required=True, metadata={
        "description": "An opaque token (192 random bits) to join the chat with, valid for CHAT_INVITE_TTL seconds"})


class ReadMarkSchema(Schema):
    """Body of ``POST /v1/chats/{chat_id}/read``."""

    iterator = fields.String(required=True, validate=validate.Length(min=1, max=255), metadata={
        "description": "An iterator of the chat: the account has read every message before it"})


class MessageEditSchema(Schema):
    """Body of ``PATCH /v1/chats/{chat_id}/messages/{message_id}``."""

    message = fields.String(required=True, validate=[validate.Length(min=1, max=65536), storable_text],
                            metadata={"description": "The new text, 1 to 65536 characters"})


#: Names in the OpenAPI components (prefixed: other plugins have pages and messages too).
SCHEMAS = {
    "ChatCreate": ChatCreateSchema,
    "ChatCreated": ChatCreatedSchema,
    "ChatMemberCreate": MemberCreateSchema,
    "ChatMemberCreated": MemberCreatedSchema,
    "ChatMessageCreate": MessageCreateSchema,
    "ChatMessageCreated": MessageCreatedSchema,
    "ChatMessage": MessageSchema,
    "ChatMessagePage": MessagePageSchema,
    "ChatSummary": ChatSummarySchema,
    "ChatSummaryList": ChatListSchema,  # named after what it nests: components register in name order
    "ChatMember": MemberSchema,
    "ChatMemberList": MemberListSchema,
    "ChatInvite": InviteSchema,
    "ChatReadMark": ReadMarkSchema,
    "ChatMessageEdit": MessageEditSchema,
}
