"""The public API: what pet_executor exports, and under which name."""

from __future__ import annotations

import re
from pathlib import Path

import pet_executor
import pet_executor.lowlevel

ROOT = Path(__file__).resolve().parents[2]


def _reexported(module_path: str) -> set[str]:
    source = (ROOT / module_path).read_text(encoding="utf-8")
    return set(re.findall(r"^from \.\w+ import (\w+) as \1$", source, re.MULTILINE))


def test_all_lists_every_reexport() -> None:
    assert isinstance(pet_executor.__all__, tuple)
    lazy = {"PetExecutor"}  # imported on first use, by the module's __getattr__
    assert set(pet_executor.__all__) == _reexported("pet_executor/__init__.py") | lazy
    assert set(pet_executor.lowlevel.__all__) == _reexported("pet_executor/lowlevel.py")


def test_public_objects_show_their_public_path() -> None:
    for name in pet_executor.__all__:
        obj = getattr(pet_executor, name)
        module = getattr(obj, "__module__", "pet_executor")
        assert module == "pet_executor", (name, module)
    for name in pet_executor.lowlevel.__all__:
        obj = getattr(pet_executor.lowlevel, name)
        assert obj.__module__ in ("pet_executor", "pet_executor.lowlevel"), name


def test_the_brief_api_is_there() -> None:
    wanted = {
        "Poll", "Context", "Waker", "Future", "run", "spawn", "JoinHandle", "current_task",
        "shield", "timeout", "select", "join", "sleep", "sleep_until", "now", "MockClock",
        "wait_readable", "wait_writable", "connect", "accept", "recv", "sendall", "Event",
        "Lock", "Semaphore", "Channel", "Cancelled",
    }  # fmt: skip
    assert wanted <= set(pet_executor.__all__)
    assert issubclass(pet_executor.Cancelled, BaseException)
    assert not issubclass(pet_executor.Cancelled, Exception)
