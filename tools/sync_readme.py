"""Write the output of ``messenger-api settings`` between the README's settings markers.

Run by ``make openapi`` (with the four plugins enabled); ``tests/test_core_docs.py`` fails when the
README and the code disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- settings:begin -->\n).*?(<!-- settings:end -->)", re.DOTALL)


def main() -> int:
    """Read the table from stdin, rewrite the block in README.md."""
    table = sys.stdin.read().strip()
    text = README.read_text(encoding="utf-8")
    new, count = BLOCK.subn(lambda m: f"{m.group(1)}{table}\n{m.group(2)}", text)
    if count != 1:
        print("README.md: settings markers not found", file=sys.stderr)
        return 1
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
