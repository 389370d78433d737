"""The plugin author's guide, docs/plugins.md, keeps up with the code: every hook, every public name."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import messenger_core
from messenger_core import hookspecs

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
README = Path(__file__).resolve().parent.parent / "README.md"


def _annotation(value: Any) -> str:
    # hookspecs.py quotes its annotations (and has postponed evaluation): show them as written
    return value.strip("'\"") if isinstance(value, str) else inspect.formatannotation(value)


def signature(spec: Callable[..., Any]) -> str:
    """``name(arg: Type, ...) -> Return``, exactly as inspect.signature reads the hookspec."""
    sig = inspect.signature(spec)
    params = ", ".join(f"{p.name}: {_annotation(p.annotation)}" for p in sig.parameters.values())
    return f"{spec.__name__}({params}) -> {_annotation(sig.return_annotation)}"


def _specs() -> list[Callable[..., Any]]:
    return [obj for name, obj in vars(hookspecs).items()
            if name.startswith("messenger_") and callable(obj) and hasattr(obj, "messenger_spec")]


def test_every_hookspec_has_a_section_with_its_exact_signature() -> None:
    documented = re.findall(r"^### `(messenger_\w+\(.*\) -> .+)`$", GUIDE.read_text(encoding="utf-8"), re.MULTILINE)
    expected = [signature(spec) for spec in _specs()]
    assert len(expected) >= 12
    assert sorted(documented) == sorted(expected), {"in the guide only": set(documented) - set(expected),
                                                    "in hookspecs.py only": set(expected) - set(documented)}


def test_every_hook_section_has_an_example() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    sections = re.split(r"^### ", text.split("## The hooks", 1)[1].split("\n## ", 1)[0], flags=re.MULTILINE)[1:]
    assert len(sections) == len(_specs())
    for section in sections:
        assert "```python" in section, section.splitlines()[0]


def test_every_public_name_is_in_the_guide() -> None:
    table = GUIDE.read_text(encoding="utf-8").split("## The public surface", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(\w+)`", table))
    assert set(messenger_core.__all__) <= listed, set(messenger_core.__all__) - listed


def test_the_readme_links_the_guide() -> None:
    assert "(docs/plugins.md)" in README.read_text(encoding="utf-8")
