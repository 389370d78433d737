"""The error codes of ``messenger_chats``, each defined once (other plugins get them from ``api``)."""

from __future__ import annotations

from messenger_core import ApiError


def chat_not_found() -> ApiError:
    """404 ``chat-not-found``: no such chat, or (auth on) one the caller may not see."""
    return ApiError(404, "chat-not-found")


def user_not_found() -> ApiError:
    """404 ``user-not-found``: no such chat member, or not one of the caller's."""
    return ApiError(404, "user-not-found")


def message_not_found() -> ApiError:
    """404 ``message-not-found``: no such message in the chat, deleted, or not the caller's."""
    return ApiError(404, "message-not-found")


def bad_cursor() -> ApiError:
    """400 ``bad-cursor``: an iterator that is malformed, of another chat, or beyond its end."""
    return ApiError(400, "bad-cursor")


#: OpenAPI components the plugin's operations refer to in one line (``messenger_openapi_components``).
COMPONENTS = {
    "parameters": {
        "ChatId": {"in": "path", "name": "chat_id", "required": True, "schema": {"type": "string"},
                   "description": "The chat's id (32 hex characters)"},
        "MessageId": {"in": "path", "name": "message_id", "required": True, "schema": {"type": "string"},
                      "description": "The message's id (32 hex characters)"},
        "AuthorMemberId": {"in": "query", "name": "user_id", "required": False, "schema": {"type": "string"},
                           "description": "With auth off, the author member"},
    },
    "responses": {
        "MessageNotFound": {
            "description": "chat-not-found (no such chat, or with auth on one the account is not in), "
                           "message-not-found (no such message in the chat, deleted, or not the caller's)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "ChatNotFoundOrNoAccount": {
            "description": "chat-not-found (no such chat, or one the account is not in), not-found (auth off: "
                           "the operation needs an account)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "ChatNotFound": {
            "description": "chat-not-found (no such chat, or with auth on, one the account has not joined)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
    },
}
