"""``join`` and ``select``: run futures concurrently, as child tasks.

Each argument (a coroutine, a future, any awaitable) runs in a task of its
own, so the children's cancel scopes and awaits are independent. The
parent waits; a child finishing wakes it only when the parent's condition
is met (every child done, a failure, a first finisher), so joining n
children costs O(n).

Neither returns before every child it started has finished, its cleanup
included: the losers of ``select`` and the siblings of a failed ``join`` are
aborted and awaited (shielded), and so are all children when the parent
itself is cancelled.

Failures: one failure is raised as it is; several (a sibling that fails
while being cancelled, two that fail in the same turn) are raised together
as an ``ExceptionGroup`` (``BaseExceptionGroup`` if one is not an
``Exception``), in the order they happened.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Awaitable
from typing import Any, TypeAlias, TypeVar, Union, overload

from ._future import Context, Future, Poll, Waker
from ._kernel import Cancelled, FutureBase, Kernel, Task, _coroutine_from, _kernel_or_raise, shield

if sys.version_info < (3, 11):  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ("join", "select")

T = TypeVar("T")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")
T5 = TypeVar("T5")

_PENDING = Poll.PENDING
_READY = Poll.ready(None)

#: What join and select take: coroutines, awaitables, or poll-only futures.
_Joinable: TypeAlias = Union[Awaitable[T], Future[T]]  # noqa: UP007 - a generic alias

_ALL = 0  # wait for every child
_FAILURE = 1  # ... or the first failure
_FIRST = 2  # wait for the first child to finish


class _Group:
    __slots__ = ("done", "failed", "mode", "order", "size", "waker")

    def __init__(self, size: int, mode: int) -> None:
        self.size = size
        self.mode = mode
        self.done = 0
        self.failed = False
        #: Indexes of the children in the order they finished.
        self.order: list[int] = []
        self.waker: Waker | None = None

    def satisfied(self) -> bool:
        if self.done == self.size:
            return True
        if self.mode == _FIRST:
            return self.done > 0
        return self.mode == _FAILURE and self.failed


class _ChildDone(Waker):
    """Registered as a waiter of one child: counts it and wakes the parent
    when the group's condition is met."""

    __slots__ = ("_group", "_index", "_task")

    def __init__(self, group: _Group, index: int, task: Task) -> None:
        self._group = group
        self._index = index
        self._task = task

    def wake(self) -> None:
        group = self._group
        group.done += 1
        group.order.append(self._index)
        if self._task._exc is not None:
            group.failed = True
        if group.waker is not None and group.satisfied():
            group.waker.wake()


class _WaitGroup(FutureBase[None]):
    __slots__ = ("_group",)

    def __init__(self, group: _Group) -> None:
        self._group = group

    def poll(self, cx: Context, /) -> Poll[None]:
        group = self._group
        if group.satisfied():
            group.waker = None
            return _READY
        group.waker = cx.waker
        return _PENDING

    def drop(self) -> None:
        self._group.waker = None


def _start(
    kernel: Kernel, awaitables: tuple[Any, ...], what: str, mode: int
) -> tuple[_Group, list[Task]]:
    coros: list[Any] = []
    try:
        for aw in awaitables:
            coros.append(_coroutine_from(aw, (), what))
    except BaseException:
        # Nothing started: close what would otherwise warn "never awaited".
        for coro, _ in coros:
            coro.close()
        for aw in awaitables[len(coros) + 1 :]:
            if isinstance(aw, types.CoroutineType):
                aw.close()
        raise
    group = _Group(len(coros), mode)
    tasks = []
    for index, (coro, name) in enumerate(coros):
        task = kernel._spawn_task(coro, f"{what}[{index}] {name}")
        task._waiters = {group: _ChildDone(group, index, task)}
        tasks.append(task)
    return group, tasks


async def _finish_children(group: _Group, tasks: list[Task]) -> None:
    if group.done == group.size:
        return
    for task in tasks:
        task._abort()
    group.mode = _ALL
    with shield():
        await _WaitGroup(group)


def _failures(group: _Group, tasks: list[Task]) -> list[BaseException]:
    """The children's failures in the order they happened; a child's
    cancellation is a failure only if we did not abort it."""
    failures = []
    for index in group.order:
        task = tasks[index]
        exc = task._exc
        if exc is None:
            continue
        task._retrieved = True
        if isinstance(exc, Cancelled) and task._aborted:
            continue
        failures.append(exc)
    return failures


def _raise(failures: list[BaseException], what: str) -> None:
    if len(failures) == 1:
        raise failures[0]
    raise BaseExceptionGroup(f"{what}: {len(failures)} tasks failed", failures)


@overload
async def join() -> tuple[()]: ...
@overload
async def join(a: _Joinable[T1], /) -> tuple[T1]: ...
@overload
async def join(a: _Joinable[T1], b: _Joinable[T2], /) -> tuple[T1, T2]: ...
@overload
async def join(a: _Joinable[T1], b: _Joinable[T2], c: _Joinable[T3], /) -> tuple[T1, T2, T3]: ...
@overload
async def join(
    a: _Joinable[T1], b: _Joinable[T2], c: _Joinable[T3], d: _Joinable[T4], /
) -> tuple[T1, T2, T3, T4]: ...
@overload
async def join(
    a: _Joinable[T1], b: _Joinable[T2], c: _Joinable[T3], d: _Joinable[T4], e: _Joinable[T5], /
) -> tuple[T1, T2, T3, T4, T5]: ...
@overload
async def join(*awaitables: _Joinable[Any]) -> tuple[Any, ...]: ...
async def join(*awaitables: Any) -> tuple[Any, ...]:
    """Run the awaitables concurrently; return their results, in order.

    The first failure aborts the others; once they have finished, it is
    raised (several failures: an ``ExceptionGroup``, see the module doc).
    """
    kernel = _kernel_or_raise("pet_executor.join()")
    group, tasks = _start(kernel, awaitables, "join", _FAILURE)
    try:
        await _WaitGroup(group)
    except BaseException:
        # The parent was cancelled: cancel the children, wait for their
        # cleanup, and let their own failures, if any, take precedence.
        await _finish_children(group, tasks)
        failures = _failures(group, tasks)
        if failures:
            _raise(failures, "join")
        raise
    await _finish_children(group, tasks)
    failures = _failures(group, tasks)
    if failures:
        _raise(failures, "join")
    return tuple(task._result for task in tasks)


@overload
async def select(a: _Joinable[T1], /) -> tuple[int, T1]: ...
@overload
async def select(a: _Joinable[T1], b: _Joinable[T2], /) -> tuple[int, T1 | T2]: ...
@overload
async def select(
    a: _Joinable[T1], b: _Joinable[T2], c: _Joinable[T3], /
) -> tuple[int, T1 | T2 | T3]: ...
@overload
async def select(
    a: _Joinable[T1], b: _Joinable[T2], c: _Joinable[T3], d: _Joinable[T4], /
) -> tuple[int, T1 | T2 | T3 | T4]: ...
@overload
async def select(*awaitables: _Joinable[Any]) -> tuple[int, Any]: ...
async def select(*awaitables: Any) -> tuple[int, Any]:
    """Run the awaitables concurrently until the first one finishes; cancel
    the others and wait for their cleanup; return ``(index, result)`` of the
    first, or raise its exception.

    A loser that finished in the same turn as the winner has its result
    dropped: select over operations that may be abandoned (cancel-safe).
    A loser that fails while being cancelled makes ``select`` raise.
    """
    if not awaitables:
        raise ValueError("select() needs at least one awaitable")
    kernel = _kernel_or_raise("pet_executor.select()")
    group, tasks = _start(kernel, awaitables, "select", _FIRST)
    try:
        await _WaitGroup(group)
    except BaseException:
        await _finish_children(group, tasks)
        failures = _failures(group, tasks)
        if failures:
            _raise(failures, "select")
        raise
    winner = group.order[0]
    await _finish_children(group, tasks)
    failures = _failures(group, tasks)  # the winner's own failure comes first
    if failures:
        _raise(failures, "select")
    return winner, tasks[winner]._result
