"""Frames of the stream, as schemas for the OpenAPI document (the stream itself is JSON over a WebSocket)."""

from __future__ import annotations

from marshmallow import Schema, fields


class SubscribeFrameSchema(Schema):
    """Client frame: carry chats, each from an iterator (null: only new messages)."""

    type = fields.Constant("subscribe", required=True)
    chats = fields.Dict(keys=fields.String(), values=fields.String(allow_none=True), required=True,
                        metadata={"description": "chat_id -> the iterator to resume after, or null"})


class AuthFrameSchema(Schema):
    """Client frame (auth on, no Authorization header): the session, within EVENTS_AUTH_TIMEOUT seconds."""

    type = fields.Constant("auth", required=True)
    session_id = fields.String(required=True, metadata={"description": "32 hex characters"})


class MessageFrameSchema(Schema):
    """Server frame: a message committed in a carried chat."""

    type = fields.Constant("message", required=True)
    chat_id = fields.String(required=True)
    message = fields.Dict(required=True, metadata={"description": "The message exactly as a page shows it"})
    iterator = fields.String(required=True,
                             metadata={"description": "Just after this message: page or resubscribe from it"})


class ErrorFrameSchema(Schema):
    """Server frame: an error (``chat_id`` for a chat of a subscribe)."""

    type = fields.Constant("error", required=True)
    message = fields.String(required=True, metadata={"description": "The code HTTP would give"})
    chat_id = fields.String()


SCHEMAS = {"EventsSubscribeFrame": SubscribeFrameSchema, "EventsAuthFrame": AuthFrameSchema,
           "EventsMessageFrame": MessageFrameSchema, "EventsErrorFrame": ErrorFrameSchema}
