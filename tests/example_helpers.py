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
    """``{"messenger_example": hooks_module}`` for ``serve_app(extra=...)``."""
    if str(EXAMPLE_DIR) not in sys.path:
        sys.path.append(str(EXAMPLE_DIR))
    return {"messenger_example": importlib.import_module("messenger_example.hooks")}


def pip(*args: str) -> None:
    """Run the venv's pip."""
    subprocess.run([str(BIN / "python"), "-m", "pip", "-q", *args], check=True, timeout=180, capture_output=True)


@contextmanager
def installed_example() -> Iterator[None]:
    """``pip install`` the example plugin into the venv for the block, then ``pip uninstall`` it."""
    pip("install", "--no-deps", "--no-build-isolation", str(EXAMPLE_DIR))
    try:
        yield
    finally:
        pip("uninstall", "-y", "messenger-example")
