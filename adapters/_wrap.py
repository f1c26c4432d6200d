"""Await a future of another kind from any host: ``adapters.wrap``.

Each kind is chained to a :class:`~bridge._work.WorkFuture` the way
CPython's ``futures._chain_future`` chains two futures: the outcome flows
forward (scheduled onto the host through its own ``await_future``),
cancellation flows back to the source through the source run's token, and a
run that is over refuses the chain with :class:`~bridge.RunFinishedError`.

- ``concurrent.futures.Future``: awaited as it is (``cancel()`` on it);
- an asyncio future or task of another loop: chained on that loop;
- a curio task of a kernel the library runs (a pet, ``bridge.run``, a
  cached runner): watched by a task of that kernel;
- a pet_executor ``JoinHandle``: its task's end is delivered by a waker;
  cancelling aborts the task and waits for its cleanup;
- any other pet_executor future: polled by the host directly
  (``RuntimeAdapter.await_pet_future``); cancelling drops it.
"""

from __future__ import annotations

import concurrent.futures
import sys
from typing import Any, TypeVar

from bridge._context import RUN_THREADS
from bridge._errors import Fix
from bridge._registry import get
from bridge._work import WorkFuture, await_work, describe

from ._call import _host_context, add_hop_note, hop_note

T = TypeVar("T")

__all__ = ("wrap",)


async def wrap(future: Any) -> Any:
    """Await ``future`` (a ``concurrent.futures.Future``, an asyncio future of
    another loop, a curio task, a pet_executor future or ``JoinHandle``) from
    a task of any runtime. Cancelling this task cancels the source and waits
    for its cleanup (a pet_executor future that is not a task is dropped);
    a source cancelled on its own side raises
    :class:`~bridge.GuestCancelledError`."""
    here = _host_context("adapters.wrap", describe(future))
    assert here.runtime is not None
    host = get(here.runtime)
    if isinstance(future, concurrent.futures.Future):
        return await await_work(host, future)
    chained = _chain(future, here.runtime)
    if chained is None:  # awaitable right here, natively
        return await future
    if isinstance(chained, WorkFuture):
        try:
            return await await_work(host, chained)
        except BaseException as error:
            if chained.done() and not chained.cancelled():
                add_hop_note(error, hop_note(chained, host, chained.label))
            raise
    return await chained


def _chain(future: Any, host: str) -> Any:
    """A WorkFuture chained to ``future``, None when the host can await it
    natively, or an awaitable to await instead."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and isinstance(future, asyncio.Future):
        loop = future.get_loop()
        if host == "asyncio" and loop is asyncio.get_running_loop():
            return None
        return _chain_asyncio(future, loop)
    from pet_executor import JoinHandle

    if isinstance(future, JoinHandle):
        if host == "pet_executor" and future.task._kernel is _current_kernel():
            return None
        return _chain_join_handle(future)
    curio = sys.modules.get("curio")
    if curio is not None and isinstance(future, curio.task.Task):
        return _chain_curio_task(future)
    if callable(getattr(future, "poll", None)):
        if host == "pet_executor":
            return None
        return get(host).await_pet_future(future)
    raise TypeError(
        f"adapters.wrap() takes a concurrent.futures.Future, an asyncio future, a curio "
        f"task, or a pet_executor future or JoinHandle; got {type(future).__name__} "
        f"{future!r}.\n"
        + Fix(
            "await adapters.wrap(some_coroutine())",
            'await adapters.call("trio", some_async_fn)  # run async code on a runtime',
        ).render()
    )


def _current_kernel() -> object:
    from pet_executor.lowlevel import current_kernel

    return current_kernel()


def _started(label: str, token: Any, canceller: Any, thread: int | None) -> WorkFuture[Any]:
    chained: WorkFuture[Any] = WorkFuture(label)
    chained.set_running_or_notify_cancel()
    chained.start(token, canceller)
    chained.thread_ident = thread
    return chained


def _chain_asyncio(future: Any, loop: Any) -> WorkFuture[Any]:
    token = get("asyncio").token_for(loop)
    label = f"an asyncio future of loop {id(loop):#x}"
    if isinstance(future, sys.modules["asyncio"].Task):
        label = f"asyncio task {future.get_name()!r}"
    chained = _started(label, token, future.cancel, token.thread_ident)

    def transfer(source: Any) -> None:
        if source.cancelled():
            chained.deliver_cancelled("an asyncio loop")
        elif (error := source.exception()) is not None:
            chained.deliver_error(error)
        else:
            chained.deliver_value(source.result())

    # Registered on the future's own loop (asyncio futures are not
    # thread-safe); a loop that is over raises RunFinishedError here.
    token.run_sync_soon_threadsafe(future.add_done_callback, transfer)
    return chained


def _chain_join_handle(handle: Any) -> WorkFuture[Any]:
    from adapters._pet_executor import _Deliver

    kernel = handle.task._kernel
    token = kernel.token
    chained = _started(f"pet_executor task {handle.name!r}", token, handle.abort, kernel._tid)
    _Deliver(handle, chained, kernel).wake()  # registers, or delivers at once
    return chained


def _chain_curio_task(task: Any) -> WorkFuture[Any]:
    from adapters._curio import _spawn_detached, kernel_token

    label = f"curio task {task.name!r}"
    if task.terminated:
        done: WorkFuture[Any] = WorkFuture(label)
        done.set_running_or_notify_cancel()
        _deliver_curio(task, done)
        return done
    import curio

    kernel: Any = next(
        (
            k
            for k in list(RUN_THREADS)
            if isinstance(k, curio.Kernel) and k._tasks.get(task.id) is task
        ),
        None,
    )
    if kernel is None:
        raise LookupError(
            f"adapters.wrap() of {label}: the task belongs to no curio kernel this library "
            f"runs, so nothing can watch it from another thread.\n"
            + Fix(
                "curio.run(main)  # main spawns the task",
                'bridge.run(main, runtime="curio")  # or run it on bridge.pet("curio")',
            ).render()
        )
    token = kernel_token(kernel)
    cancel_task = kernel._traps["trap_cancel_task"]
    chained = _started(label, token, lambda: cancel_task(task), RUN_THREADS.get(kernel))

    async def watch() -> None:
        await task.wait()
        _deliver_curio(task, chained)

    token.run_sync_soon_threadsafe(lambda: _spawn_detached(kernel, watch()))
    return chained


def _deliver_curio(task: Any, chained: WorkFuture[Any]) -> None:
    import curio

    task.joined = True
    error = task.exception
    if isinstance(error, curio.TaskCancelled) or (error is None and task.cancelled):
        chained.deliver_cancelled("a curio kernel")
    elif error is not None:
        chained.deliver_error(error)
    else:
        chained.deliver_value(task.result)
