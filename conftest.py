"""Loads the testing kit, ``messenger_core.testing``, for this repository's tests.

Plugin authors get it from its ``pytest11`` entry point; here that entry point is off
(``-p no:messenger`` in pyproject.toml) because pytest imports entry-point plugins before pytest-cov
starts measuring, which would leave the core's module-level lines uncovered.  Loading it from this
conftest, before ``tests/conftest.py`` imports it, also lets pytest rewrite its assertions.
"""

pytest_plugins = ("messenger_core.testing",)
