"""Marshmallow schemas of the search endpoints (input validation and OpenAPI components)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from messenger_core import storable_text

STATUSES = ("WAITING", "IN_PROCESS", "SUCCESS", "FAILED")


class SearchRequestSchema(Schema):
    """Body of ``POST /v1/chats/search``."""

    message = fields.String(required=True, validate=[validate.Length(min=4, max=1024), storable_text],
                            metadata={"description": "Words (all must match, stemmed), \"quoted phrases\" "
                                                     "and -exclusions, as in web search"})


class SearchTaskCreatedSchema(Schema):
    """The accepted task."""

    task_id = fields.String(required=True, metadata={"description": "Task id (32 hex)"})


class SearchTaskStatusSchema(Schema):
    """Where a task is."""

    status = fields.String(required=True, validate=validate.OneOf(STATUSES))


class SearchResultsQuerySchema(Schema):
    """Query of ``GET /v1/chats/search/{task_id}/messages``."""

    limit = fields.Integer(required=True, validate=validate.Range(min=1, max=1000))
    start = fields.String(data_key="from", load_default=None,
                          metadata={"description": "next.iterator of the previous page"})


class SearchResultSchema(Schema):
    """One found message."""

    message_id = fields.String(required=True)
    chat_id = fields.String(required=True)
    user_id = fields.String(required=True, metadata={"description": "The chat member who wrote it"})
    text = fields.String(required=True)
    created_at = fields.String(required=True, metadata={"description": "ISO 8601 timestamp"})


class SearchIteratorSchema(Schema):
    """Where the next page starts."""

    iterator = fields.String(required=True)


class SearchResultsPageSchema(Schema):
    """A page of results, newest first."""

    messages = fields.List(fields.Nested(SearchResultSchema), required=True)
    next = fields.Nested(SearchIteratorSchema, required=True)


SCHEMAS: dict[str, Any] = {
    "SearchRequest": SearchRequestSchema,
    "SearchTaskCreated": SearchTaskCreatedSchema,
    "SearchTaskStatus": SearchTaskStatusSchema,
    "SearchResult": SearchResultSchema,
    "SearchIterator": SearchIteratorSchema,
    "SearchResultsPage": SearchResultsPageSchema,
}
