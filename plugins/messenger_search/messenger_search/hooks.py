"""Hook implementations of ``messenger_search`` (see messenger_core.hookspecs)."""

from messenger_core.hookspecs import hookimpl  # noqa: F401  pylint: disable=unused-import
