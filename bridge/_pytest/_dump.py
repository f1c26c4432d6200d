"""Dumps for a test that timed out: every thread's stack and every task.

Collect, build plain data, then render. Tasks are found runtime-neutrally:
every suspended coroutine (and async generator) that no other one awaits is
the root of a task, whatever runtime drives it; its await chain is its stack.
A dump is made from a watchdog thread while the test's loop may still be
running, so it only reads, and tolerates objects that change under it.
"""

from __future__ import annotations

import gc
import sys
import threading
import traceback
import types
from dataclasses import dataclass
from typing import Any

__all__ = ("Dump", "TaskInfo", "ThreadInfo", "coroutine_stack", "take_dump")


@dataclass(frozen=True)
class ThreadInfo:
    name: str
    ident: int
    daemon: bool
    stack: tuple[str, ...]


@dataclass(frozen=True)
class TaskInfo:
    name: str
    stack: tuple[str, ...]


@dataclass(frozen=True)
class Dump:
    title: str
    threads: tuple[ThreadInfo, ...]
    tasks: tuple[TaskInfo, ...]

    def render(self) -> str:
        lines = [f"--- {self.title}: {len(self.threads)} threads ---"]
        for thread in self.threads:
            kind = "daemon thread" if thread.daemon else "thread"
            lines.append(f"{kind} {thread.name!r} ({thread.ident}):")
            lines.extend("  " + line for line in thread.stack)
        lines.append(f"--- {self.title}: {len(self.tasks)} suspended tasks ---")
        for task in self.tasks:
            lines.append(f"task {task.name}:")
            lines.extend("  " + line for line in task.stack)
        return "\n".join(lines)


def _frame_lines(frame: types.FrameType | None) -> tuple[str, ...]:
    if frame is None:
        return ("(no frame)",)
    summary = traceback.extract_stack(frame)
    return tuple(line.rstrip() for item in summary.format() for line in item.splitlines())


def _awaited(obj: Any) -> Any:
    """What a coroutine, generator or async generator is suspended on."""
    for attr in ("cr_await", "gi_yieldfrom", "ag_await"):
        value = getattr(obj, attr, None)
        if value is not None:
            return value
    return None


def _frame_of(obj: Any) -> types.FrameType | None:
    for attr in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(obj, attr, None)
        if frame is not None:
            return frame  # type: ignore[no-any-return]
    return None


def coroutine_stack(coro: Any) -> tuple[str, ...]:
    """One line per frame of ``coro``'s await chain, outermost first."""
    lines: list[str] = []
    seen = 0
    while coro is not None and seen < 100:
        seen += 1
        frame = _frame_of(coro)
        if frame is not None:
            code = frame.f_code
            name = getattr(code, "co_qualname", code.co_name)  # 3.11+
            lines.append(f'File "{code.co_filename}", line {frame.f_lineno}, in {name}')
        coro = _awaited(coro)
    return tuple(lines)


def _thread_infos() -> tuple[ThreadInfo, ...]:
    frames = sys._current_frames()
    by_ident = {t.ident: t for t in threading.enumerate()}
    infos = []
    for ident, frame in frames.items():
        thread = by_ident.get(ident)
        name = thread.name if thread is not None else "(not a threading.Thread)"
        daemon = thread.daemon if thread is not None else True
        infos.append(ThreadInfo(name, ident, daemon, _frame_lines(frame)))
    return tuple(infos)


def _suspended_roots() -> list[Any]:
    suspended = [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, (types.CoroutineType, types.AsyncGeneratorType))
        and _frame_of(obj) is not None
    ]
    inner: set[int] = set()
    for obj in suspended:
        awaited = _awaited(obj)
        depth = 0
        while awaited is not None and depth < 100:
            depth += 1
            inner.add(id(awaited))
            awaited = _awaited(awaited)
    return [obj for obj in suspended if id(obj) not in inner]


def _task_names() -> dict[int, str]:
    """Names of the asyncio tasks of every loop, by the id of their coroutine."""
    names: dict[int, str] = {}
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return names
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.Task) and not obj.done():
            try:
                names[id(obj.get_coro())] = f"asyncio task {obj.get_name()!r}"
            except Exception:
                continue
    return names


def take_dump(title: str) -> Dump:
    """Every thread's stack and every suspended task, right now."""
    threads = _thread_infos()
    try:
        names = _task_names()
        tasks = tuple(
            TaskInfo(
                names.get(id(root), getattr(root, "__qualname__", repr(root))),
                coroutine_stack(root),
            )
            for root in _suspended_roots()
        )
    except Exception as exc:  # objects changing under a running loop
        tasks = (TaskInfo(f"(tasks could not be listed: {exc!r})", ()),)
    return Dump(title, threads, tasks)
