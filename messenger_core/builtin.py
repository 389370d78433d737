"""The core's own contributions, registered like a plugin's (under the name ``core``, always on).

The liveness and readiness probes, the API documentation routes, the one error schema and the
shared error responses every plugin's operations refer to.  Web-layer modules are imported inside
the hooks, so assembling the contributions of a process that serves no HTTP costs nothing more.
"""

from __future__ import annotations

from typing import Any

from .hookspecs import hookimpl

#: Error responses an operation names in one line, e.g. ``503: DatabaseUnavailable``.
SHARED_RESPONSES = {
    "BadParameters": "bad-parameters: the body or a query parameter fails validation",
    "DatabaseUnavailable": "database-unavailable: PostgreSQL cannot be reached right now",
    "PayloadTooLarge": "payload-too-large: the request body is over 1 MiB",
    "ServiceUnavailable": "service-unavailable: Redis or RabbitMQ cannot be reached right now",
    "TooManyRequests": "request-limit-exceeded: over the client's request limit (the Retry-After header "
                       "says how many seconds to wait)",
    "Unauthorized": "auth-failed, invalid-session-id or session-id-expired",
}


def error_response(description: str) -> dict[str, Any]:
    """An OpenAPI response whose body is the one error shape."""
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


@hookimpl
def messenger_routes() -> list[tuple[Any, ...]]:
    """``/ping``, ``/ping_db``, ``/health``, ``/metrics`` and the documentation."""
    from . import openapi, ops, web  # pylint: disable=import-outside-toplevel  # the web layer, on demand
    return [(r"/ping", web.PingHandler), (r"/ping_db", web.PingDbHandler), *ops.OPS_ROUTES,
            *openapi.docs_routes()]


@hookimpl
def messenger_schemas() -> dict[str, Any]:
    """The one error body, ``{"message": "<code>"}``."""
    from .openapi import ErrorSchema  # pylint: disable=import-outside-toplevel
    return {"Error": ErrorSchema}


@hookimpl
def messenger_openapi_components() -> dict[str, dict[str, dict[str, Any]]]:
    """The shared error responses."""
    return {"responses": {name: error_response(text) for name, text in SHARED_RESPONSES.items()}}
