"""The errors of the core: the one error type of the API, and the outages of the data layer.

Every error response is ``{"message": "<code>"}``.  A handler (or a request hook) raises
:class:`ApiError`; the data layer knows nothing of HTTP and raises :class:`DatabaseUnavailable` or
:class:`ServiceUnavailable`, which the web layer answers as 503.  The core's own codes are defined
once, here; each plugin defines its codes once, in its ``errors.py``.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error the client should see: HTTP status, a stable code and optional extra headers.

    ``detail`` is for the operator only (for example the validation message that refused a body):
    it is logged at debug level and never sent.
    """

    def __init__(self, status: int, code: str, headers: dict[str, str] | None = None,
                 detail: str | None = None) -> None:
        super().__init__(f"{status} {code}")
        self.status_code = status
        self.code = code
        self.headers = dict(headers or {})
        self.detail = detail

    def __repr__(self) -> str:
        return f"ApiError({self.status_code}, {self.code!r})"


class Unavailable(Exception):
    """A backing service cannot be reached right now; ``code`` is what the web layer answers with 503."""

    code = "service-unavailable"


class DatabaseUnavailable(Unavailable):
    """PostgreSQL cannot be reached right now (answered 503 ``database-unavailable``)."""

    code = "database-unavailable"


class ServiceUnavailable(Unavailable):
    """Redis or RabbitMQ cannot be reached right now (answered 503 ``service-unavailable``)."""

    code = "service-unavailable"


class ConfigError(Exception):
    """A setting has a value that cannot be used; the message names the variable."""


class StartupError(Exception):
    """The plugins' contributions cannot be assembled (duplicate route, task name, bad hook)."""


# ---- the core's error codes (API.md, Conventions) ---------------------------------------------

def bad_parameters(detail: str | None = None) -> ApiError:
    """400 ``bad-parameters``: the body or a query parameter fails validation."""
    return ApiError(400, "bad-parameters", detail=detail)


def not_found() -> ApiError:
    """404 ``not-found``: no route matches the path."""
    return ApiError(404, "not-found")


def payload_too_large() -> ApiError:
    """413 ``payload-too-large``: the request body is over the limit."""
    return ApiError(413, "payload-too-large")


def request_limit_exceeded(retry_after: str) -> ApiError:
    """429 ``request-limit-exceeded``, with the ``Retry-After`` header (seconds)."""
    return ApiError(429, "request-limit-exceeded", {"Retry-After": retry_after})


def database_unavailable() -> ApiError:
    """503 ``database-unavailable`` (for a handler; the data layer raises :class:`DatabaseUnavailable`)."""
    return ApiError(503, "database-unavailable")


def service_unavailable() -> ApiError:
    """503 ``service-unavailable`` (for a handler; the data layer raises :class:`ServiceUnavailable`)."""
    return ApiError(503, "service-unavailable")


#: The status and code the web layer answers for Tornado's own errors (a wrong method, ...).
STATUS_CODES = {400: "bad-parameters", 401: "auth-failed", 404: "not-found", 405: "method-not-allowed",
                413: "payload-too-large", 503: "service-unavailable"}
