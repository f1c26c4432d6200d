"""bridge.current_context() in every cell: {asyncio, asyncio+uvloop, trio,
curio} x {task, loop callback, each of the runtime's own worker threads, a
thread started from a task, a plain thread, after the run}."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import sniffio

import bridge
from bridge import Context, RunFinishedError, current_context
from tests.runtimes import Driver, driver_params, on_thread


def assert_loop_context(ctx: Context, driver: Driver, native: object, *, in_task: bool) -> None:
    assert ctx.runtime == driver.runtime
    assert ctx.role == "event_loop"
    assert ctx.in_task is in_task
    assert ctx.can_block is False
    assert ctx.hosted is False
    assert ctx.portal is False
    assert ctx.guest is None
    assert ctx.token is not None
    assert ctx.token.runtime == driver.runtime
    assert ctx.token.native is native


def assert_plain(ctx: Context) -> None:
    assert ctx == Context(runtime=None, role="plain")
    assert ctx.can_block is True
    assert ctx.token is None


def test_plain_thread_is_plain() -> None:
    assert_plain(current_context())
    assert_plain(on_thread(current_context))
    assert bridge.current_runtime() is None


def test_inside_a_task(driver: Driver) -> None:
    async def main() -> tuple[Context, Context, str, object]:
        first = current_context()
        return (
            first,
            current_context(),
            sniffio.current_async_library(),
            await driver.native_token(),
        )

    ctx, again, sniffed, native = driver.run(main)
    assert_loop_context(ctx, driver, native, in_task=True)
    assert again is ctx, "a second call in the same run reuses the cached snapshot"
    assert sniffed == ctx.runtime, "sniffio agrees inside a task"


@pytest.mark.parametrize("driver", driver_params(lambda d: d.callback is not None))
def test_inside_a_loop_callback(driver: Driver) -> None:
    """call_soon / run_sync_soon callbacks (curio has none: its cell is the
    token callback of test_token_callback_from_another_thread)."""
    callback = driver.callback
    assert callback is not None

    async def main() -> tuple[Context, object]:
        return await callback(current_context), await driver.native_token()

    ctx, native = driver.run(main)
    assert_loop_context(ctx, driver, native, in_task=False)


def test_token_callback_from_another_thread(driver: Driver) -> None:
    """A token schedules a callback onto its run from another thread; the
    callback sees itself as a loop callback of that run."""

    async def main() -> tuple[Context, Context, object, bool]:
        token = current_context().token
        assert token is not None
        set_event, wait_event = driver.event()
        seen: list[Context] = []
        ran_on: list[bool] = []
        loop_thread = threading.current_thread()

        def callback() -> None:
            seen.append(current_context())
            ran_on.append(threading.current_thread() is loop_thread)
            set_event()

        on_thread(lambda: token.run_sync_soon_threadsafe(callback))
        await wait_event()
        return current_context(), seen[0], await driver.native_token(), ran_on[0]

    task_ctx, cb_ctx, native, on_loop_thread = driver.run(main)
    assert on_loop_thread
    assert_loop_context(cb_ctx, driver, native, in_task=False)
    assert cb_ctx.token == task_ctx.token


def test_worker_threads_of_the_runtime(driver: Driver) -> None:
    """Each of the runtime's own offload calls gives role="worker", and the
    owner's token wherever the owner can be known."""

    async def main() -> tuple[list[tuple[Any, Context]], Context]:
        seen = []
        for offload in driver.offloads:
            seen.append((offload, await offload.call(current_context)))
        return seen, current_context()

    seen, task_ctx = driver.run(main)
    assert len(seen) == len(driver.offloads) >= 1
    for offload, ctx in seen:
        label = f"{driver.id} / {offload.name}"
        assert ctx.role == "worker", label
        assert ctx.runtime == offload.runtime, label
        assert ctx.can_block is True, label
        assert ctx.in_task is False, label
        if offload.owner_known:
            assert ctx.token == task_ctx.token, label
            assert hash(ctx.token) == hash(task_ctx.token), label
        else:
            assert ctx.token is None, label


def test_worker_token_reaches_the_owner(driver: Driver) -> None:
    """The token a worker reports schedules onto its owner's loop thread."""
    offload = next(o for o in driver.offloads if o.owner_known)

    async def main() -> bool:
        set_event, wait_event = driver.event()
        loop_thread = threading.current_thread()
        ran_on: list[bool] = []

        def callback() -> None:
            ran_on.append(threading.current_thread() is loop_thread)
            set_event()

        def in_worker() -> None:
            token = current_context().token
            assert token is not None
            token.run_sync_soon_threadsafe(callback)

        await offload.call(in_worker)
        await wait_event()
        return ran_on[0]

    assert driver.run(main) is True


def test_thread_started_from_a_task_is_plain(driver: Driver) -> None:
    async def main() -> Context:
        return on_thread(current_context)

    assert_plain(driver.run(main))


def test_after_the_run_is_plain_and_its_token_refuses_work(driver: Driver) -> None:
    async def main() -> bridge.Token | None:
        return current_context().token

    token = driver.run(main)
    assert_plain(current_context())
    assert token is not None
    with pytest.raises(RunFinishedError) as info:
        token.run_sync_soon_threadsafe(lambda: None)
    assert info.value.code == "BRG103"


def test_tokens_of_two_runs_differ(driver: Driver) -> None:
    async def main() -> bridge.Token | None:
        return current_context().token

    assert driver.run(main) != driver.run(main)


def test_sniffio_gap_in_an_asyncio_callback() -> None:
    """sniffio finds asyncio through the current task, so it fails in a loop
    callback; current_context() still names the runtime (docs/detection.md)."""

    async def main() -> tuple[Context, bool]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[Context, bool]] = loop.create_future()

        def callback() -> None:
            try:
                sniffio.current_async_library()
            except sniffio.AsyncLibraryNotFoundError:
                fut.set_result((current_context(), False))
            else:  # pragma: no cover - a sniffio that closed the gap
                fut.set_result((current_context(), True))

        loop.call_soon(callback)
        return await fut

    ctx, sniffio_found_it = asyncio.run(main())
    assert ctx.runtime == "asyncio"
    assert ctx.role == "event_loop"
    assert sniffio_found_it is False


def test_a_loop_started_inside_a_worker_reports_the_loop() -> None:
    """Scheduler threads are recognised before worker threads: asyncio run in a
    trio worker thread reports asyncio's loop, not trio's worker."""
    trio = pytest.importorskip("trio")

    def nested() -> tuple[Context, Context]:
        async def inner() -> Context:
            return current_context()

        return asyncio.run(inner()), current_context()

    async def main() -> tuple[Context, Context]:
        result: tuple[Context, Context] = await trio.to_thread.run_sync(nested)
        return result

    inside, after = trio.run(main)
    assert (inside.runtime, inside.role) == ("asyncio", "event_loop")
    assert (after.runtime, after.role) == ("trio", "worker")
