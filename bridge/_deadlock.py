"""Deadlock detection: the wait-for graph of every wait the library makes.

Theory of operation. Nodes are work items (``WorkFuture``), threads, and
capacity limiters. An edge ``a -> b`` says "a cannot go on until b does":

- a thread blocked in a library wait (``block_on``, ``PetExecutor.call``,
  ``WorkFuture.result()``) waits on the work item;
- a task that is a work item and awaits another work item, or a limiter,
  through the library waits on it;
- implicitly, a work item waits on the thread that runs it whenever that
  thread is itself blocked in a library wait: a loop whose thread is blocked
  runs none of its tasks (a worker thread likewise runs only its job);
- a limiter waits on its holders, and is stuck only if *every* holder is.

Each wait inserts its edge and checks, under one lock, whether the new edge
closes a cycle (for a limiter: whether all its holders lead back). If it
does, the wait raises ``DeadlockError`` naming the cycle instead of hanging.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from typing import Any

from ._errors import DeadlockError, Fix

__all__ = ("CURRENT_WORK", "Limiter", "ThreadNode", "graph")

#: The work item whose task is running (set in the work's own context).
CURRENT_WORK: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "runtime_bridge_work", default=None
)


class ThreadNode:
    """A thread, as a node of the graph (one per live thread)."""

    __slots__ = ("thread",)

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread

    def describe(self) -> str:
        return f"thread {self.thread.name!r}"


class Limiter:
    """The graph's view of a capacity limiter: who holds its tokens."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.holders: set[Any] = set()

    def describe(self) -> str:
        return f"limiter {self.name}"


class WaitGraph:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # waiter -> what it waits on (a waiter waits on one thing at a time)
        self._waits: dict[Any, Any] = {}
        self._threads: dict[int, ThreadNode] = {}

    def thread_node(self) -> ThreadNode:
        """This thread's node (thread ids are reused: a new thread with an old
        one's id gets a node of its own)."""
        thread = threading.current_thread()
        node = self._threads.get(thread.ident)  # type: ignore[arg-type]
        if node is None or node.thread is not thread:
            node = self._threads[thread.ident] = ThreadNode(thread)  # type: ignore[index]
        return node

    def _successors(self, node: Any, pending: Any) -> tuple[list[Any], bool]:
        """What ``node`` waits on, and whether it is stuck only when all of
        them are (a limiter: any holder that finishes frees a token), rather
        than when any one is (a work item needs its wait *and* its thread)."""
        if isinstance(node, Limiter):
            return list(node.holders), True
        found = []
        target = self._waits.get(node) if node is not pending else None
        if target is not None:
            found.append(target)
        runs_on = getattr(node, "thread_ident", None)
        if runs_on is not None:
            thread = self._threads.get(runs_on)
            blocked = thread is not None and (thread in self._waits or thread is pending)
            if blocked and thread is not node:
                found.append(thread)
        return found, False

    def _stuck(self, node: Any, goal: Any, path: list[Any]) -> list[Any] | None:
        """If ``node`` can never go on once ``goal`` waits, the chain of waits
        that shows it (ending back at ``goal`` or on the chain), else None."""
        if node is goal or any(node is p for p in path):
            return [node]
        successors, needs_all = self._successors(node, goal)
        if not successors:
            return None  # it runs: it can finish
        path = [*path, node]
        chains = []
        for successor in successors:
            chain = self._stuck(successor, goal, path)
            if chain is None and needs_all:
                return None
            if chain is not None:
                if not needs_all:
                    return [node, *chain]
                chains.append(chain)
        return [node, *chains[0]] if needs_all else None

    def begin(self, waiter: Any, target: Any, what: str) -> None:
        """Record that ``waiter`` waits on ``target`` (until ``end``); raise
        ``DeadlockError`` at once, recording nothing, if that wait can never
        finish.

        The edge is recorded first and checked second, so of two waits that
        close a cycle together at least one sees the other (the GIL orders
        the two threads' steps); the search itself runs under the lock, and
        only when the target is waiting already (the common wait, on work
        that runs, costs a dict write and two lookups).
        """
        self._waits[waiter] = target
        if not self._may_be_stuck(target):
            return
        with self._lock:
            path = self._stuck(target, waiter, [])
        if path is not None:
            self.end(waiter)
            raise _deadlock_error([waiter, *path], what)

    def end(self, waiter: Any) -> None:
        """The wait ``begin`` recorded is over."""
        self._waits.pop(waiter, None)

    def _may_be_stuck(self, target: Any) -> bool:
        if target in self._waits or isinstance(target, Limiter):
            return True
        ident = getattr(target, "thread_ident", None)
        thread = self._threads.get(ident) if ident is not None else None
        return thread is not None and thread in self._waits

    @contextlib.contextmanager
    def waiting(self, waiter: Any, target: Any, what: str) -> Iterator[None]:
        """``begin`` ... ``end`` around a block."""
        self.begin(waiter, target, what)
        try:
            yield
        finally:
            self.end(waiter)

    def hold(self, limiter: Limiter, holder: Any) -> None:
        with self._lock:
            limiter.holders.add(holder)

    def release(self, limiter: Limiter, holder: Any) -> None:
        with self._lock:
            limiter.holders.discard(holder)

    def snapshot(self) -> list[tuple[str, str]]:
        """The current waits, described (for diagnostics and tests)."""
        with self._lock:
            return [(_describe(a), _describe(b)) for a, b in self._waits.items()]


def _describe(node: Any) -> str:
    describe = getattr(node, "describe", None)
    if callable(describe):
        return str(describe())
    return repr(node)


def _deadlock_error(cycle: list[Any], what: str) -> DeadlockError:
    chain = "\n".join(
        f"    {_describe(n)}" + ("  waits on" if i < len(cycle) - 1 else "")
        for i, n in enumerate(cycle)
    )
    return DeadlockError(
        f"{what} would never finish: it closes this cycle of waits:\n{chain}",
        fixes=(
            Fix(
                "pet.submit(work).result()  # on the pet's own thread",
                "await work()  # or wait from another thread",
            ),
            Fix(
                "bridge.block_on(work)  # on a loop thread, offload policy",
                "await work()  # the loop keeps running the tasks work needs",
            ),
        ),
    )


graph = WaitGraph()
