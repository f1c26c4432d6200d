"""Per-runtime drivers for the tests: run a main function, run a sync callback
on the loop, and each of the runtime's own ways to offload to a thread.

Every driver method is written in the runtime's own idiom, so the tests
exercise the runtimes as users drive them, not through the library.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from bridge._registry import unavailable_reason

T = TypeVar("T")
SyncFn = Callable[[], T]


@dataclass(frozen=True)
class Offload:
    """One way a runtime runs sync code on a worker thread."""

    name: str
    #: Whether the worker's owner (its token) can be known.
    owner_known: bool
    #: The runtime the worker reports (None: a pool whose owner is unknown).
    runtime: str | None
    call: Callable[[SyncFn[Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Driver:
    id: str
    runtime: str
    #: Runs ``async_fn()`` to completion on this thread, the runtime's way.
    run: Callable[[Callable[[], Awaitable[Any]]], Any]
    #: From inside a task: run a sync function as a callback of the loop
    #: (None: the runtime has no loop callbacks).
    callback: Callable[[SyncFn[Any]], Awaitable[Any]] | None
    offloads: tuple[Offload, ...]
    #: From inside a task: the runtime's own handle on the current run.
    native_token: Callable[[], Awaitable[object]]
    #: A loop-side event: (set it, from the loop thread; wait for it).
    event: Callable[[], tuple[Callable[[], None], Callable[[], Awaitable[Any]]]]
    #: The runtime's own sleep.
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    requires: tuple[str, ...] = field(default=())

    def pet_options(self) -> dict[str, Any]:
        """Options that make a pet (or a runner) of this variant."""
        if self.id == "asyncio+uvloop":
            import uvloop

            return {"loop_factory": uvloop.new_event_loop}
        return {}

    def marks(self) -> list[pytest.MarkDecorator]:
        for name in self.requires:
            if name == "uvloop":
                import importlib.util

                if importlib.util.find_spec("uvloop") is None:
                    return [pytest.mark.skip(reason="uvloop is not installed")]
                continue
            error = unavailable_reason(name)
            if error is not None:
                return [pytest.mark.skip(reason=error.what)]
        return []


# --- asyncio ---------------------------------------------------------------


async def _asyncio_callback(fn: SyncFn[T]) -> T:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()
    loop.call_soon(lambda: fut.set_result(fn()))
    return await fut


async def _run_in_default_executor(fn: SyncFn[T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn)


async def _run_in_own_executor(fn: SyncFn[T]) -> T:
    with ThreadPoolExecutor(max_workers=1) as pool:
        return await asyncio.get_running_loop().run_in_executor(pool, fn)


async def _anyio_to_thread(fn: SyncFn[T]) -> T:
    import anyio.to_thread

    return await anyio.to_thread.run_sync(fn)


_ASYNCIO_OFFLOADS = (
    Offload("asyncio.to_thread", True, "asyncio", asyncio.to_thread),
    Offload("run_in_executor(None)", True, "asyncio", _run_in_default_executor),
    Offload("anyio.to_thread", True, "asyncio", _anyio_to_thread),
    Offload("run_in_executor(own pool)", False, None, _run_in_own_executor),
)


async def _asyncio_native() -> object:
    return asyncio.get_running_loop()


def _asyncio_event() -> tuple[Callable[[], None], Callable[[], Awaitable[Any]]]:
    event = asyncio.Event()
    return event.set, event.wait


def _asyncio_run(async_fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await async_fn()

    return asyncio.run(main())


def _uvloop_run(async_fn: Callable[[], Awaitable[T]]) -> T:
    import uvloop

    async def main() -> T:
        return await async_fn()

    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


# --- trio --------------------------------------------------------------------


def _trio_run(async_fn: Callable[[], Awaitable[T]]) -> T:
    import trio

    return trio.run(async_fn)  # type: ignore[arg-type]


async def _trio_callback(fn: SyncFn[T]) -> T:
    import trio

    result: list[T] = []
    done = trio.Event()

    def cb() -> None:
        result.append(fn())
        done.set()

    trio.lowlevel.current_trio_token().run_sync_soon(cb)
    await done.wait()
    return result[0]


async def _trio_native() -> object:
    import trio

    return trio.lowlevel.current_trio_token()


def _trio_event() -> tuple[Callable[[], None], Callable[[], Awaitable[Any]]]:
    import trio

    event = trio.Event()
    return event.set, event.wait


async def _trio_sleep(seconds: float) -> None:
    import trio

    await trio.sleep(seconds)


async def _trio_to_thread(fn: SyncFn[T]) -> T:
    import trio

    return await trio.to_thread.run_sync(fn)


_TRIO_OFFLOADS = (
    Offload("trio.to_thread", True, "trio", _trio_to_thread),
    Offload("anyio.to_thread", True, "trio", _anyio_to_thread),
)


# --- curio -------------------------------------------------------------------


def _curio_run(async_fn: Callable[[], Awaitable[T]]) -> T:
    import curio

    async def main() -> T:
        return await async_fn()

    return curio.run(main)  # type: ignore[no-any-return]


async def _curio_native() -> object:
    from curio.traps import _get_kernel

    return await _get_kernel()


def _curio_event() -> tuple[Callable[[], None], Callable[[], Awaitable[Any]]]:
    import curio

    event = curio.UniversalEvent()  # its set() is sync and thread-safe
    return event.set, event.wait


async def _curio_sleep(seconds: float) -> None:
    import curio

    await curio.sleep(seconds)


async def _curio_run_in_thread(fn: SyncFn[T]) -> T:
    import curio

    return await curio.run_in_thread(fn)  # type: ignore[no-any-return]


async def _curio_async_thread(fn: SyncFn[T]) -> T:
    import curio

    thread = await curio.spawn_thread(fn)
    return await thread.join()  # type: ignore[no-any-return]


_CURIO_OFFLOADS = (
    Offload("curio async thread", True, "curio", _curio_async_thread),
    Offload("curio.run_in_thread", False, "curio", _curio_run_in_thread),
)


# --- pet_executor ---------------------------------------------------------


def _pet_run(async_fn: Callable[[], Awaitable[T]]) -> T:
    import pet_executor

    return pet_executor.run(async_fn)


async def _pet_callback(fn: SyncFn[T]) -> T:
    # pet_executor's loop callbacks are the ones its token schedules.
    import bridge
    import pet_executor

    token = bridge.current_context().token
    assert token is not None
    result: list[T] = []
    done = pet_executor.Event()

    def cb() -> None:
        result.append(fn())
        done.set()

    token.run_sync_soon_threadsafe(cb)
    await done.wait()
    return result[0]


async def _pet_native() -> object:
    from pet_executor.lowlevel import current_kernel

    return current_kernel()


def _pet_event() -> tuple[Callable[[], None], Callable[[], Awaitable[Any]]]:
    import pet_executor

    event = pet_executor.Event()
    return event.set, event.wait


async def _pet_sleep(seconds: float) -> None:
    import pet_executor

    await pet_executor.sleep(seconds)


async def _spawn_blocking(fn: SyncFn[T]) -> T:
    import bridge

    return await bridge.spawn_blocking(fn)


_ASYNCIO = {"callback": _asyncio_callback, "native_token": _asyncio_native, "event": _asyncio_event}

DRIVERS: tuple[Driver, ...] = (
    Driver("asyncio", "asyncio", _asyncio_run, offloads=_ASYNCIO_OFFLOADS, **_ASYNCIO),
    Driver(
        "asyncio+uvloop",
        "asyncio",
        _uvloop_run,
        offloads=_ASYNCIO_OFFLOADS,
        requires=("uvloop",),
        **_ASYNCIO,
    ),
    Driver(
        "trio",
        "trio",
        _trio_run,
        callback=_trio_callback,
        offloads=_TRIO_OFFLOADS,
        native_token=_trio_native,
        event=_trio_event,
        sleep=_trio_sleep,
        requires=("trio",),
    ),
    Driver(
        "curio",
        "curio",
        _curio_run,
        callback=None,
        offloads=_CURIO_OFFLOADS,
        native_token=_curio_native,
        event=_curio_event,
        sleep=_curio_sleep,
        requires=("curio",),
    ),
    Driver(
        "pet_executor",
        "pet_executor",
        _pet_run,
        callback=_pet_callback,
        # The runtime has no offload call of its own: the library's is it.
        offloads=(Offload("bridge.spawn_blocking", True, "pet_executor", _spawn_blocking),),
        native_token=_pet_native,
        event=_pet_event,
        sleep=_pet_sleep,
    ),
)


def on_thread(fn: SyncFn[T]) -> T:
    """Run ``fn`` on a new plain thread and return its result."""
    result: list[T] = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    thread.join()
    return result[0]


def driver_params(where: Callable[[Driver], bool] = lambda d: True) -> list[Any]:
    """``pytest.param`` for each driver that ``where`` selects, ids and skips set."""
    return [pytest.param(d, id=d.id, marks=d.marks()) for d in DRIVERS if where(d)]
