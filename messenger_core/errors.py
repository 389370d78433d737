"""The one error type of the API: every error response is ``{"message": "<code>"}``."""

from __future__ import annotations

from tornado.web import HTTPError


class ApiError(HTTPError):
    """An error the client should see: HTTP status, a stable code and optional extra headers."""

    def __init__(self, status: int, code: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, reason=None)
        self.code = code
        self.headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"ApiError({self.status_code}, {self.code!r})"


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached right now (raised by the data layer; the web layer answers 503)."""


class ConfigError(Exception):
    """A setting has a value that cannot be used; the message names the variable."""


class StartupError(Exception):
    """The plugins' contributions cannot be assembled (duplicate route, task name, bad hook)."""


def bad_parameters() -> ApiError:
    """400 ``bad-parameters``: the body or a query parameter fails validation."""
    return ApiError(400, "bad-parameters")


def database_unavailable() -> ApiError:
    """503 ``database-unavailable``: PostgreSQL cannot be reached right now."""
    return ApiError(503, "database-unavailable")


def service_unavailable() -> ApiError:
    """503 ``service-unavailable``: Redis or RabbitMQ cannot be reached right now."""
    return ApiError(503, "service-unavailable")
