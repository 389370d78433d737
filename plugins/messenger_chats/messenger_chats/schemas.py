"""Request and response schemas of the chats plugin (they validate input and feed OpenAPI)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from messenger_core import storable_text


class ChatCreateSchema(Schema):
    """Body of ``POST /v1/chats``."""

    chat_name = fields.String(required=True, validate=[validate.Length(min=0, max=255), storable_text],
                              metadata={"description": "Any name, 0 to 255 characters; names may repeat"})


class ChatCreatedSchema(Schema):
    """Answer of ``POST /v1/chats``."""

    chat_id = fields.String(required=True, metadata={"description": "The new chat's id (32 hex characters)"})


class MemberCreateSchema(Schema):
    """Body of ``POST /v1/chats/{chat_id}/users``."""

    user_name = fields.String(required=True, validate=[validate.Length(min=1, max=255), storable_text],
                              metadata={"description": "Display name, 1 to 255 characters; may repeat"})


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


class PageQuerySchema(Schema):
    """Query of ``GET /v1/chats/{chat_id}/messages`` (documented by hand in the handler)."""

    limit = fields.Integer(required=True, strict=False, validate=validate.Range(min=1, max=1000),
                           metadata={"description": "Page size, 1 to 1000"})
    from_ = fields.String(data_key="from", load_default=None,
                          metadata={"description": "next.iterator of the previous page; absent: the chat's start"})
    wait = fields.Integer(load_default=0, strict=False, validate=validate.Range(min=0, max=60),
                          metadata={"description": "Seconds to hold an empty page for a new message, 0 to 60"})


class MessageSchema(Schema):
    """One message of a page."""

    message_id = fields.String(required=True, metadata={"description": "32 hex characters"})
    user_id = fields.String(required=True, metadata={"description": "The author (chat member id)"})
    text = fields.String(required=True)
    created_at = fields.String(required=True, metadata={
        "format": "date-time", "description": "When it was stored, ISO 8601 in UTC"})


class ChatNextSchema(Schema):
    """Where the next page starts (in the spec as ``ChatNext``, through the page that nests it)."""

    iterator = fields.String(required=True, metadata={
        "description": "Opaque position after the last message returned; pass it as `from` to continue or "
                       "to poll for newer messages"})


class MessagePageSchema(Schema):
    """Answer of ``GET /v1/chats/{chat_id}/messages``: messages oldest first and the next position."""

    messages = fields.List(fields.Nested(MessageSchema), required=True)
    next = fields.Nested(ChatNextSchema, required=True)


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
}
