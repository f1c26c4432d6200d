"""Helpers for the cross-runtime tests: host x guest pairs, guest pets, and
per-runtime ways to cancel a task, cancel oneself, and name the current task."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import bridge
from pet_executor._host import PetExecutor
from tests.runtimes import DRIVERS, Driver

#: How long a test waits for something another thread does, at most.
WAIT_S = 10.0


class Pets:
    """One pet per guest variant, made on first use, closed at the end."""

    def __init__(self) -> None:
        self._pets: dict[str, PetExecutor] = {}

    def __call__(self, guest: Driver) -> PetExecutor:
        pet = self._pets.get(guest.id)
        if pet is None or pet.closed:
            pet = self._pets[guest.id] = PetExecutor(
                guest.runtime, name=f"pet-{guest.id}", **guest.pet_options()
            )
        return pet

    def close(self) -> None:
        for pet in self._pets.values():
            pet.close()


async def _nothing() -> None:
    return None


@contextlib.contextmanager
def pets() -> Iterator[Pets]:
    """A pet per available guest variant, started at once: they are the
    fixture's, not the first test's that uses one (the leak check)."""
    made = Pets()
    try:
        for guest in DRIVERS:
            if not guest.marks():
                made(guest).call(_nothing)
        yield made
    finally:
        made.close()


async def wait_for(event: threading.Event) -> None:
    """Wait, in a task of any runtime, for a threading.Event (on a worker)."""
    if not await bridge.spawn_blocking(event.wait, WAIT_S):
        raise TimeoutError("the event was not set in time")


# -- cancel a task from its host's side ---------------------------------------------


async def cancel_when(
    runtime: str, started: threading.Event, body: Callable[[], Awaitable[Any]]
) -> None:
    """Run ``body()`` as a child task of this runtime, cancel it (the
    runtime's own way) once ``started`` is set, and wait for it to end."""
    if runtime == "asyncio":
        import asyncio

        task = asyncio.ensure_future(body())
        await wait_for(started)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    elif runtime == "trio":
        import trio

        async with trio.open_nursery() as nursery:

            async def canceller() -> None:
                await wait_for(started)
                nursery.cancel_scope.cancel()

            nursery.start_soon(canceller)
            await body()
    elif runtime == "curio":
        import curio

        task = await curio.spawn(body)
        await wait_for(started)
        await task.cancel()
    else:
        import pet_executor

        handle = pet_executor.spawn(body)
        await wait_for(started)
        handle.abort()
        with contextlib.suppress(pet_executor.Cancelled):
            await handle


def host_cancel_type(runtime: str) -> type[BaseException]:
    if runtime == "asyncio":
        import asyncio

        return asyncio.CancelledError
    if runtime == "trio":
        import trio

        return trio.Cancelled
    if runtime == "curio":
        import curio

        return curio.CancelledError  # type: ignore[no-any-return]
    import pet_executor

    return pet_executor.Cancelled


# -- cancel oneself, on the guest's side ----------------------------------------------


async def cancel_myself(runtime: str) -> None:
    """Inside a work task: cancel it from the guest's own side (not through its
    caller), as a guest-side timeout or a task cancel would, then wait to be
    cancelled."""
    if runtime == "asyncio":
        import asyncio

        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(WAIT_S)
        return
    # trio, curio and pet_executor have no public way for the task's own
    # code to cancel it from outside its scopes: the work's canceller does
    # what a guest-side cancel does, without a request from the caller.
    from bridge._deadlock import CURRENT_WORK

    work = CURRENT_WORK.get()
    assert work is not None
    assert work._canceller is not None
    work._canceller()
    if runtime == "trio":
        import trio

        await trio.sleep(WAIT_S)
    elif runtime == "curio":
        import curio

        await curio.sleep(WAIT_S)
    else:
        import pet_executor

        await pet_executor.sleep(WAIT_S)


# -- what runs where ----------------------------------------------------------------------


async def current_task_object(runtime: str) -> object:
    if runtime == "asyncio":
        import asyncio

        return asyncio.current_task()
    if runtime == "trio":
        import trio

        return trio.lowlevel.current_task()
    if runtime == "curio":
        import curio

        return await curio.current_task()
    import pet_executor

    return pet_executor.current_task()


def sniffio_name() -> str:
    import sniffio

    return sniffio.current_async_library()


def notes_of(error: BaseException) -> list[str]:
    return list(getattr(error, "__notes__", []))


PY312 = sys.version_info >= (3, 12)
