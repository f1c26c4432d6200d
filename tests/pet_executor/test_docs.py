"""The examples of docs/pet_executor.md run, as written."""

from __future__ import annotations

from tests.docs_examples import python_blocks, run_blocks

PAGE = "docs/pet_executor.md"


def test_the_page_has_a_hand_written_future() -> None:
    blocks = python_blocks(PAGE)
    assert len(blocks) >= 5
    assert any("def poll(self, cx)" in block for block in blocks)


def test_the_examples_run() -> None:
    namespace = run_blocks(PAGE)
    assert "ThreadResult" in namespace
