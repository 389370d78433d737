"""The example plugin (tests/example_plugin): loaded in-process, or pip-installed into a fresh venv.

Nothing here installs into the project's own venv: subprocess servers that need the example run
from a venv of their own (``example_venv``), built from copies outside the source tree with no
index and no build isolation.  That venv sees the project's installed packages through a ``.pth``
file, so nothing is downloaded.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

EXAMPLE_DIR = Path(__file__).parent / "example_plugin"
REPO = Path(__file__).resolve().parent.parent
IGNORED = ("__pycache__", "*.egg-info", "build", ".pytest_cache")  # not copied


def example_plugin() -> dict[str, Any]:
    """``{"messenger_example": hooks_module}`` for ``serve_app(extra=...)``.

    Always the source under tests/, never a copy pip installed.
    """
    if sys.path[0] != str(EXAMPLE_DIR):
        sys.path.insert(0, str(EXAMPLE_DIR))
    module = importlib.import_module("messenger_example.hooks")
    assert Path(module.__file__ or "").is_relative_to(EXAMPLE_DIR), module.__file__
    return {"messenger_example": module}


def run(command: list[str], env: dict[str, str], cwd: Path | None = None, check: bool = True,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run a command with exactly ``env``; fail with its output when it fails (and ``check``)."""
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def make_venv(root: Path) -> Path:
    """A new venv under ``root`` that also sees this project's site-packages (appended last); its bin dir."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = Path(run([str(venv / "bin" / "python"), "-c", where], {}).stdout.strip())
    project = sysconfig.get_paths()["purelib"]
    (purelib / "zz_project_packages.pth").write_text(f"import site; site.addsitedir({project!r})\n")
    return venv / "bin"


def copy_tree(root: Path, name: str) -> Path:
    """A copy of the core (``"core"``) or of the example plugin (``"example_plugin"``) under ``root``."""
    target = root / name
    if name == "core":
        shutil.copytree(REPO / "messenger_core", target / "messenger_core", ignore=shutil.ignore_patterns(*IGNORED))
        for part in ("pyproject.toml", "README.md"):
            shutil.copy(REPO / part, target / part)
    else:
        shutil.copytree(EXAMPLE_DIR, target, ignore=shutil.ignore_patterns(*IGNORED))
    assert not target.resolve().is_relative_to(REPO)
    return target


def pip(bin_dir: Path, env: dict[str, str], *args: str) -> None:
    """The venv's pip, offline: no index, no build isolation."""
    command = [str(bin_dir / "python"), "-m", "pip", "--disable-pip-version-check", "-q", *args]
    if args[0] == "install":
        command += ["--no-index", "--no-build-isolation"]
    run(command, env)


def example_venv(root: Path) -> Path:
    """A fresh venv with the core and the example plugin pip-installed; its bin dir."""
    bin_dir = make_venv(root)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(root)}
    pip(bin_dir, env, "install", "--no-deps", str(copy_tree(root, "core")))
    pip(bin_dir, env, "install", str(copy_tree(root, "example_plugin")))
    return bin_dir
