"""The error codes of ``messenger_search``, each defined once.

``user-not-found`` and ``bad-cursor`` are the chats plugin's codes: they come from its public
module, not from a second definition here.
"""

from __future__ import annotations

from messenger_chats.api import bad_cursor, user_not_found
from messenger_core import ApiError

__all__ = ["COMPONENTS", "bad_cursor", "task_failed", "task_not_complete", "task_not_found", "user_not_found"]


def task_not_found() -> ApiError:
    """404 ``task-not-found``: unknown, expired, not a UUID, or another identity's task."""
    return ApiError(404, "task-not-found")


def task_not_complete() -> ApiError:
    """400 ``task-not-complete``: results asked for before the task finished."""
    return ApiError(400, "task-not-complete")


def task_failed() -> ApiError:
    """400 ``task-failed``: the task ended FAILED, it has no results."""
    return ApiError(400, "task-failed")


#: OpenAPI components of the plugin's operations (``messenger_openapi_components``).
COMPONENTS = {
    "parameters": {
        "TaskId": {"in": "path", "name": "task_id", "required": True, "schema": {"type": "string"},
                   "description": "The search task's id (32 hex characters)"},
    },
    "responses": {
        "TaskNotFound": {
            "description": "task-not-found (unknown, expired, not a UUID, or another identity's task)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
    },
}
