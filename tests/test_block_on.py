"""bridge.block_on, row by row of the "called from / does" table."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from typing import Any

import pytest
import sniffio

import bridge
from bridge import BlockingInLoopError, Context, RunFinishedError
from tests.runtimes import Driver, driver_params, on_thread

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")

RESUMABLE = driver_params(lambda d: d.runtime in ("asyncio", "curio") and d.id != "asyncio+uvloop")


def where_am_i(driver: Driver) -> Any:
    async def where() -> tuple[Context, int, object]:
        await driver.sleep(0)
        return bridge.current_context(), threading.get_ident(), await driver.native_token()

    return where


# -- a plain thread ------------------------------------------------------------


@pytest.mark.parametrize("driver", RESUMABLE)
def test_plain_thread_runs_here_on_a_cached_runner(driver: Driver) -> None:
    """asyncio and curio run on this thread, on one runner reused by every call."""

    def body() -> tuple[Any, Any, bool]:
        first = bridge.block_on(where_am_i(driver), runtime=driver.runtime)
        second = bridge.block_on(where_am_i(driver), runtime=driver.runtime)
        bridge.close_thread_runners()
        return first, second, threading.get_ident() == first[1]

    first, second, on_this_thread = on_thread(body)
    assert on_this_thread
    assert first[0].role == "event_loop"
    assert first[0].runtime == driver.runtime
    assert first[2] is second[2], "no new loop per call"
    assert first[0].hosted is False


def test_work_done_in_its_first_step_sees_a_running_loop() -> None:
    """block_on takes the work's first step at once (no turn of the loop
    when it does not suspend), inside everything a turn sets up."""

    async def gen() -> Any:
        yield 1

    async def first_step_only() -> tuple[bool, bool, str, bool, int]:
        loop = asyncio.get_running_loop()
        agen = gen()
        await agen.__anext__()  # registered with the loop's hooks
        VAR.set("changed")
        return (
            loop.is_running(),
            asyncio.current_task() is not None,
            sniffio.current_async_library(),
            agen in loop._asyncgens,  # type: ignore[attr-defined]
            len(VAR.get()),
        )

    hooks = sys.get_asyncgen_hooks()
    VAR.set("caller")
    assert bridge.block_on(first_step_only, copy_back=True) == (True, True, "asyncio", True, 7)
    assert VAR.get() == "changed", "the first step ran in the copied context"
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()  # nothing left running on this thread
    assert sys.get_asyncgen_hooks() == hooks
    assert bridge.block_on(asyncio.sleep, 0, "then a suspending call") == "then a suspending call"


def test_pending_tasks_stay_pending_until_the_next_call() -> None:
    def body() -> list[str]:
        log: list[str] = []

        async def background() -> None:
            log.append("started")
            await asyncio.sleep(0)
            log.append("resumed")

        async def spawn() -> None:
            global _keep
            _keep = asyncio.get_running_loop().create_task(background())

        async def tick() -> None:
            await asyncio.sleep(0)
            await asyncio.sleep(0)

        bridge.block_on(spawn)
        before = list(log)
        bridge.block_on(tick)
        bridge.close_thread_runners()
        return [*before, "|", *log]

    log = on_thread(body)
    before, after = log[: log.index("|")], log[log.index("|") + 1 :]
    assert "resumed" not in before, "the first call did not run the background task to the end"
    assert after[-1] == "resumed", "the next call on the thread resumed it"


def test_trio_from_a_plain_thread_runs_on_the_shared_trio_pet() -> None:
    pytest.importorskip("trio")
    from tests.runtimes import DRIVERS

    trio_driver = next(d for d in DRIVERS if d.id == "trio")
    ctx, ident, _ = bridge.block_on(where_am_i(trio_driver), runtime="trio")
    assert ident != threading.get_ident()
    assert (ctx.runtime, ctx.hosted) == ("trio", True)


def test_default_runtime_is_asyncio_and_configurable() -> None:
    async def name() -> str:
        return str(bridge.current_runtime())

    assert bridge.block_on(name) == "asyncio"
    with pytest.raises(LookupError, match="tokio"):
        bridge.configure(default_runtime="tokio")
    with pytest.raises(ValueError, match="unknown policy"):
        bridge.configure(policy="lenient")  # type: ignore[arg-type]


def test_results_and_errors_cross(driver: Driver) -> None:
    async def add(a: int, b: int) -> int:
        await driver.sleep(0)
        return a + b

    async def fails() -> None:
        await driver.sleep(0)
        raise ValueError("from the work")

    assert bridge.block_on(add, 1, 2, runtime=driver.runtime) == 3
    assert bridge.block_on(add(3, 4), runtime=driver.runtime) == 7
    with pytest.raises(ValueError, match="from the work") as info:
        bridge.block_on(fails, runtime=driver.runtime)
    assert "fails" in {entry.name for entry in info.traceback}, "the work's frames are kept"


def test_timeout_cancels_the_work_and_raises_builtin_timeout(driver: Driver) -> None:
    cleaned = threading.Event()

    async def long() -> None:
        try:
            await driver.sleep(60)
        finally:
            cleaned.set()

    with pytest.raises(TimeoutError, match=r"did not finish within 0\.05 s; it was cancelled"):
        bridge.block_on(long, runtime=driver.runtime, timeout=0.05)
    assert cleaned.is_set(), "the work's cleanup ran before block_on raised"


def test_contextvars_copied_in_and_back_only_on_request(driver: Driver) -> None:
    async def read_and_set() -> str:
        value = VAR.get()
        VAR.set("set by the work")
        return value

    def body() -> tuple[str, str, str, str]:
        VAR.set("caller")
        seen = bridge.block_on(read_and_set, runtime=driver.runtime)
        after = VAR.get()
        seen_again = bridge.block_on(read_and_set, runtime=driver.runtime, copy_back=True)
        return seen, after, seen_again, VAR.get()

    ctx = contextvars.Context()
    assert ctx.run(on_thread, lambda: contextvars.copy_context().run(body)) == (
        "caller",
        "caller",
        "caller",
        "set by the work",
    )


def test_paused_runner_token_refuses_work() -> None:
    async def token() -> bridge.Token | None:
        return bridge.current_context().token

    def body() -> bridge.Token | None:
        return bridge.block_on(token)

    tok = body()
    assert tok is not None
    with pytest.raises(RunFinishedError):
        tok.run_sync_soon_threadsafe(lambda: None)


# -- worker threads ------------------------------------------------------------


def test_worker_routes_back_to_its_owner_loop(driver: Driver) -> None:
    """From each of the runtime's offload threads whose owner is known, and
    from our spawn_blocking workers, block_on runs on the owner's loop."""
    where = where_am_i(driver)

    async def main() -> tuple[list[tuple[str, object]], object]:
        seen = []
        for offload in driver.offloads:
            if offload.owner_known:
                _, _, native = await offload.call(lambda: bridge.block_on(where))
                seen.append((offload.name, native))
        _, _, native = await bridge.spawn_blocking(bridge.block_on, where)
        seen.append(("spawn_blocking", native))
        return seen, await driver.native_token()

    seen, own = driver.run(main)
    assert seen
    for name, native in seen:
        assert native is own, name


def test_worker_of_unknown_owner_uses_the_shared_pet() -> None:
    async def where() -> tuple[bool, int]:
        return bridge.current_context().hosted, threading.get_ident()

    async def main() -> tuple[tuple[bool, int], int]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                pool, lambda: bridge.block_on(where)
            ), threading.get_ident()

    (hosted, ident), loop_ident = asyncio.run(main())
    assert hosted is True
    assert ident != loop_ident


def test_worker_asking_for_another_runtime_uses_its_pet() -> None:
    pytest.importorskip("trio")

    async def trio_where() -> str | None:
        return bridge.current_runtime()

    async def main() -> str | None:
        return await asyncio.to_thread(bridge.block_on, trio_where, runtime="trio")

    assert asyncio.run(main()) == "trio"


# -- event-loop threads --------------------------------------------------------


def test_loop_thread_without_portal_raises(driver: Driver) -> None:
    async def nothing() -> None:
        return None

    async def main() -> None:
        bridge.block_on(nothing())

    with pytest.raises(BlockingInLoopError) as info:
        driver.run(main)
    message = str(info.value)
    assert f"running {driver.runtime}'s event loop (in a task)" in message
    assert "await bridge.spawn_blocking(sync_caller)" in message
    assert "ensure_portal" in message
    assert message.endswith("runtime-bridge explain BRG001")


# -- bad input -----------------------------------------------------------------


def test_not_awaitable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="expected an awaitable or an async function, got int 5"):
        bridge.block_on(5)  # type: ignore[call-overload]

    def sync() -> int:
        return 1

    with pytest.raises(
        TypeError, match=r"but test_not_awaitable_is_a_type_error\.<locals>\.sync returned int"
    ):
        bridge.block_on(sync)  # type: ignore[call-overload]


def test_awaitable_with_arguments_is_a_type_error() -> None:
    async def f(x: int) -> int:
        return x

    coro = f(1)
    with pytest.raises(TypeError, match=r"pass either an awaitable, or an async function"):
        bridge.block_on(coro, 2)  # type: ignore[call-overload]
    coro.close()
