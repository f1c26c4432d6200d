"""The leak check: threads, pets, tasks and file descriptors that a test
left behind.

A snapshot is taken before the test's setup and after its teardown; what
the second has and the first has not leaked, except what belongs to
something that lives on by design: the plugin's own runs and watchdog, the
library's caches (shared pets, idle ``spawn_blocking`` workers) and the
runtimes' own (trio's and anyio's idle worker threads), threads the
ini option ``bridge_leak_ignore_threads`` names, and whatever a fixture of a
wider scope made during its setup (it is that fixture's until its teardown).
"""

from __future__ import annotations

import fnmatch
import os
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ._dump import TaskInfo

__all__ = ("Allowance", "Snapshot", "find_leaks", "snapshot")

#: How long, in all, the check waits for new threads and descriptors that
#: are on their way out.
EXIT_GRACE_S = 1.0

#: Threads that are caches by design, idle between uses.
CACHE_THREADS = (
    "bridge-worker",
    "pet-*-shared",
    "AnyIO worker thread",
    "Trio thread *",
    "bridge-pytest-*",
)

_FD_DIR = "/proc/self/fd" if sys.platform.startswith("linux") else "/dev/fd"


def _fds() -> dict[int, str]:
    try:
        names = os.listdir(_FD_DIR)
    except OSError:
        return {}
    fds: dict[int, str] = {}
    for name in names:
        try:
            fd = int(name)
            fds[fd] = os.readlink(f"{_FD_DIR}/{name}")
        except (ValueError, OSError):
            continue  # the listing's own descriptor, closed by now
    return fds


def _live_pets() -> list[Any]:
    host = sys.modules.get("pet_executor._host")
    if host is None:
        return []
    shared = sys.modules.get("bridge._pets")
    shared_pets = set(map(id, shared._shared.values())) if shared is not None else set()
    return [p for p in list(host._live) if not p.closed and id(p) not in shared_pets]


def _caches() -> int:
    """How many caches of the library exist: shared pets, and the runners
    ``block_on`` keeps for this thread (each holds a loop's plumbing)."""
    shared = sys.modules.get("bridge._pets")
    count = 0 if shared is None else sum(not p.closed for p in list(shared._shared.values()))
    runners = sys.modules.get("bridge._runners")
    here = getattr(runners._here, "runners", None) if runners is not None else None
    return count + (len(here.by_runtime) if here is not None else 0)


@dataclass
class Snapshot:
    threads: dict[threading.Thread, None]
    pets: dict[int, Any]
    fds: dict[int, str]
    tasks: dict[int, tuple[object, TaskInfo]]
    caches: int


def snapshot(tasks: Iterable[tuple[object, TaskInfo]] = ()) -> Snapshot:
    return Snapshot(
        threads=dict.fromkeys(t for t in threading.enumerate() if t.is_alive()),
        pets={id(p): p for p in _live_pets()},
        fds=_fds(),
        tasks={id(obj): (obj, info) for obj, info in tasks},
        caches=_caches(),
    )


@dataclass
class Allowance:
    """What fixtures of a wider scope made and own until their teardown."""

    threads: set[threading.Thread] = field(default_factory=set)
    pets: set[int] = field(default_factory=set)
    fds: set[tuple[int, str]] = field(default_factory=set)
    tasks: set[int] = field(default_factory=set)

    def add(self, before: Snapshot, after: Snapshot) -> Allowance:
        """Record what appeared between two snapshots; return just that."""
        made = Allowance(
            threads=set(after.threads) - set(before.threads),
            pets=set(after.pets) - set(before.pets),
            fds=set(after.fds.items()) - set(before.fds.items()),
            tasks=set(after.tasks) - set(before.tasks),
        )
        self.threads |= made.threads
        self.pets |= made.pets
        self.fds |= made.fds
        self.tasks |= made.tasks
        return made

    def remove(self, made: Allowance) -> None:
        self.threads -= made.threads
        self.pets -= made.pets
        self.fds -= made.fds
        self.tasks -= made.tasks


def find_leaks(
    before: Snapshot,
    after: Snapshot,
    allowed: Allowance,
    exempt_threads: Iterable[threading.Thread],
    ignore_patterns: Iterable[str],
) -> list[str]:
    """One line per thing that leaked."""
    exempt = set(exempt_threads)
    patterns = (*CACHE_THREADS, *ignore_patterns)
    lines: list[str] = []
    new_threads = [
        t
        for t in after.threads
        if t not in before.threads
        and t not in exempt
        and t not in allowed.threads
        and not isinstance(t, threading._DummyThread)  # foreign threads: never removed
        and not any(fnmatch.fnmatchcase(t.name, p) for p in patterns)
    ]
    # A thread on its way out (a runtime's worker told to stop when its run
    # ended) is not a leak: give those a moment to finish, bounded.
    deadline = time.monotonic() + EXIT_GRACE_S
    for thread in new_threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            kind = "daemon thread" if thread.daemon else "thread"
            lines.append(f"{kind} {thread.name!r} is still running")
    for key, pet in after.pets.items():
        if key not in before.pets and key not in allowed.pets:
            lines.append(f"{pet!r} was not closed (call its close(), or use it in a with block)")
    for key, (_, info) in after.tasks.items():
        if key not in before.tasks and key not in allowed.tasks:
            where = f" at {info.stack[-1]}" if info.stack else ""
            lines.append(f"{info.name} is still pending{where}")
    # A cache that started during the test (a shared pet, a thread's runner)
    # opens its loop's plumbing: then only descriptors of files count.
    cache_started = after.caches > before.caches or any(
        t not in before.threads
        and (t in exempt or any(fnmatch.fnmatchcase(t.name, p) for p in patterns))
        for t in after.threads
    )
    new_fds = {
        fd: target
        for fd, target in after.fds.items()
        # A descriptor open before may point elsewhere now (output capture
        # swaps 1 and 2): only new numbers count.
        if fd not in before.fds
        and (fd, target) not in allowed.fds
        and not (cache_started and not target.startswith("/"))
    }
    # Another thread may be reading a file at the moment of the snapshot (a
    # traceback being formatted reads sources): only what stays open counts.
    while new_fds and time.monotonic() < deadline:
        time.sleep(0.01)
        now = _fds()
        new_fds = {fd: target for fd, target in new_fds.items() if now.get(fd) == target}
    lines.extend(
        f"file descriptor {fd} ({target}) is still open" for fd, target in sorted(new_fds.items())
    )
    return lines
