"""Find the ```python blocks of a markdown file, so tests can run the docs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(path: str | Path) -> list[str]:
    """The source of each ```python block of ``path`` (relative to the repo)."""
    text = (ROOT / path).read_text(encoding="utf-8")
    return [m.group(1) for m in _BLOCK.finditer(text)]


def run_blocks(path: str | Path) -> dict[str, object]:
    """Execute the python blocks of ``path`` in order, in one namespace."""
    namespace: dict[str, object] = {"__name__": f"docs:{path}"}
    for source in python_blocks(path):
        exec(compile(source, str(path), "exec"), namespace)
    return namespace
