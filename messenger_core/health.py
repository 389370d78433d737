"""Availability of a backing service (PostgreSQL, Redis, RabbitMQ), as its callers last saw it."""

from __future__ import annotations

import logging


class Availability:
    """Remembers whether the last call to a service went through; logs each change once.

    A long outage is one warning when it starts and one line when the service is back, not a line
    per failed request.
    """

    def __init__(self, label: str, logger: logging.Logger, down: str = "unavailable") -> None:
        self.label = label
        self.log = logger  # the caller's, so the lines keep their source
        self.down = down
        self.available = True

    def failed(self, exc: BaseException) -> bool:
        """Record a failed call; True when this call is the one that found the service gone."""
        changed = self.available
        if changed:
            self.log.warning("%s %s: %s", self.label, self.down, str(exc).strip() or type(exc).__name__)
        self.available = False
        return changed

    def succeeded(self) -> None:
        """Record a call that went through."""
        if not self.available:
            self.log.info("%s is back", self.label)
        self.available = True
