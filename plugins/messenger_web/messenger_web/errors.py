"""The error codes of ``messenger_web``: an asset that is not shipped is the API's usual 404."""

from __future__ import annotations

from messenger_core import ApiError, not_found


def asset_not_found() -> ApiError:
    """404 ``not-found``: no such asset in this build (an old page asking for a replaced file)."""
    return not_found()
