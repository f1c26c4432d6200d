"""The docs' examples run, and the docs list what the code has."""

from __future__ import annotations

import pytest

from bridge._errors import _ALL
from tests.docs_examples import ROOT, python_blocks, run_blocks

PAGES_WITH_EXAMPLES = [
    "README.md",
    "docs/index.md",
    "docs/detection.md",
    "docs/where.md",
    "docs/spawn_blocking.md",
    "docs/pets.md",
    "docs/deadlocks.md",
    "docs/adapters.md",
    "docs/portals.md",
]


@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES)
def test_examples_run(page: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert python_blocks(page), f"{page} has no python example"
    run_blocks(page)


def test_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme
    assert "make test" in readme


def test_error_page_lists_every_code() -> None:
    page = (ROOT / "docs/errors.md").read_text()
    for cls in _ALL:
        assert f"| `{cls.code}` | `{cls.__name__}` |" in page


def test_index_links_every_page() -> None:
    index = (ROOT / "docs/index.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name != "index.md":
            assert f"({page.name})" in index, page.name
