"""The error codes of ``messenger_auth``, each defined once.

``user-not-found`` here is the login's 400 (no account of that name); the chats plugin's 404 of the
same code is about a chat member, a different error that API.md happens to name alike.
"""

from __future__ import annotations

from messenger_core import ApiError


def auth_failed() -> ApiError:
    """401 ``auth-failed``: no session header where one is needed, or one that is malformed."""
    return ApiError(401, "auth-failed")


def invalid_session_id() -> ApiError:
    """401 ``invalid-session-id``: an unknown or logged-out session."""
    return ApiError(401, "invalid-session-id")


def session_id_expired() -> ApiError:
    """401 ``session-id-expired``: a session older than ``AUTH_TOKEN_LIFETIME``."""
    return ApiError(401, "session-id-expired")


def user_already_exists() -> ApiError:
    """400 ``user-already-exists``: registration of a taken user name."""
    return ApiError(400, "user-already-exists")


def user_not_found() -> ApiError:
    """400 ``user-not-found``: login with a user name no account has."""
    return ApiError(400, "user-not-found")


def bad_password() -> ApiError:
    """400 ``bad-password``: login with the wrong password."""
    return ApiError(400, "bad-password")
