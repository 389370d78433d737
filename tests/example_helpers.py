"""The example plugin (tests/example_plugin) loaded in-process, for core tests."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from support import BIN

EXAMPLE_DIR = Path(__file__).parent / "example_plugin"


def example_plugin() -> dict[str, Any]:
    """``{"messenger_example": hooks_module}`` for ``serve_app(extra=...)``.

    Always the source under tests/, never a copy pip installed (a test uninstalls that one).
    """
    if sys.path[0] != str(EXAMPLE_DIR):
        sys.path.insert(0, str(EXAMPLE_DIR))
    module = importlib.import_module("messenger_example.hooks")
    assert Path(module.__file__ or "").is_relative_to(EXAMPLE_DIR), module.__file__
    return {"messenger_example": module}


def pip(*args: str) -> None:
    """Run the venv's pip."""
    subprocess.run([str(BIN / "python"), "-m", "pip", "-q", *args], check=True, timeout=180, capture_output=True)


def install_example() -> None:
    """``pip install`` the example plugin into the venv (subprocess servers find its entry point)."""
    pip("install", "--no-deps", "--no-build-isolation", str(EXAMPLE_DIR))


def uninstall_example() -> None:
    """``pip uninstall`` it."""
    pip("uninstall", "-y", "messenger-example")


@contextmanager
def installed_example() -> Iterator[None]:
    """The example plugin installed for the block, uninstalled afterwards."""
    install_example()
    try:
        yield
    finally:
        uninstall_example()
