"""The README's settings table and the committed swagger.yml are what the code generates."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from support import BIN, REPO_PLUGINS

ROOT = Path(__file__).resolve().parent.parent
CLEAN_ENV = {"PATH": str(BIN), "MESSENGER_APPS": ",".join(REPO_PLUGINS)}


def _generated(*args: str) -> str:
    return subprocess.run([str(BIN / "messenger-api"), *args], capture_output=True, text=True, timeout=60,
                          check=True, env=CLEAN_ENV).stdout


def test_swagger_yml_matches_the_code() -> None:
    committed = (ROOT / "swagger.yml").read_text()
    assert _generated("openapi") == committed, "swagger.yml is stale: run `make openapi` and commit it"


def test_readme_settings_table_matches_the_code() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- settings:begin -->\n(.*?)<!-- settings:end -->", readme, re.DOTALL)
    assert block is not None
    assert block.group(1).strip() == _generated("settings").strip(), "run `make openapi` and commit README.md"


def test_protected_operations_declare_the_session_scheme() -> None:
    spec = yaml.safe_load((ROOT / "swagger.yml").read_text())
    schemes = spec["components"]["securitySchemes"]
    assert len(schemes) == 1
    assert "security" not in spec["paths"]["/ping"]["get"]
    assert "security" not in spec["paths"]["/v1/auth/login"]["post"]
    assert spec["paths"]["/v1/chats"]["post"]["security"] == [{name: []} for name in schemes]
