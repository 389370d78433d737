"""Validators shared by every plugin's marshmallow schemas."""

from __future__ import annotations

from marshmallow import ValidationError


def storable_text(value: str) -> None:
    """Refuse text PostgreSQL cannot store: NUL characters and lone UTF-16 surrogates.

    Without it such input reaches the database and fails there (a 500, or a failed task) instead
    of being a 400 ``bad-parameters``.
    """
    if "\x00" in value:
        raise ValidationError("NUL characters are not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("not valid Unicode text") from None
