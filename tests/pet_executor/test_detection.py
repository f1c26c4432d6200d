"""Where am I, under pet_executor: every cell of detection, the token, and
nested runs of any runtime."""

from __future__ import annotations

import asyncio
import importlib.util
import threading

import pytest

import bridge
import pet_executor as pe
from bridge._registry import unavailable_reason
from pet_executor.lowlevel import current_kernel

from ._helpers import in_thread


def test_inside_a_task() -> None:
    async def main() -> tuple[bridge.Context, object]:
        kernel = current_kernel()
        assert kernel is not None
        return bridge.current_context(), kernel.token

    ctx, token = pe.run(main)
    assert ctx.runtime == "pet_executor"
    assert ctx.role == "event_loop"
    assert ctx.in_task is True
    assert ctx.can_block is False
    assert ctx.hosted is False
    assert ctx.token == token
    assert ctx.token is not None
    assert ctx.token.runtime == "pet_executor"


def test_the_token_knows_its_thread() -> None:
    async def main() -> tuple[int | None, int]:
        token = bridge.current_context().token
        assert token is not None
        return token.thread_ident, threading.get_ident()

    token_thread, here = pe.run(main)
    assert token_thread == here


def test_detection_is_cached_per_run() -> None:
    async def main() -> bool:
        return bridge.current_context() is bridge.current_context()

    assert pe.run(main)


def test_inside_a_callback_scheduled_through_the_token() -> None:
    async def main() -> bridge.Context:
        seen: list[bridge.Context] = []
        done = pe.Event()
        token = bridge.current_context().token
        assert token is not None

        def callback() -> None:
            seen.append(bridge.current_context())
            done.set()

        token.run_sync_soon_threadsafe(callback)
        await done.wait()
        return seen[0]

    ctx = pe.run(main)
    assert ctx.runtime == "pet_executor"
    assert ctx.role == "event_loop"
    assert ctx.in_task is False
    assert ctx.can_block is False


def test_a_token_used_from_another_thread_runs_on_the_kernel_thread() -> None:
    async def main() -> tuple[int, int, bridge.Context]:
        token = bridge.current_context().token
        assert token is not None
        done = pe.Event()
        ran_on: list[int] = []
        seen: list[bridge.Context] = []

        def callback(marker: str) -> None:
            assert marker == "arg"
            ran_on.append(threading.get_ident())
            seen.append(bridge.current_context())
            done.set()

        in_thread(lambda: token.run_sync_soon_threadsafe(callback, "arg"))
        await done.wait()
        return ran_on[0], threading.get_ident(), seen[0]

    ran_on, kernel_thread, ctx = pe.run(main)
    assert ran_on == kernel_thread
    assert ctx.in_task is False


def test_tokens_of_one_run_are_equal_and_of_two_runs_differ() -> None:
    async def main() -> object:
        return bridge.current_context().token

    first, second = pe.run(main), pe.run(main)
    assert first != second

    async def twice() -> bool:
        a = bridge.current_context().token
        b = await pe.spawn(lambda: main())
        return a == b and hash(a) == hash(b)

    assert pe.run(twice)


def test_in_a_spawn_blocking_worker_of_a_pet_executor_task() -> None:
    async def main() -> tuple[bridge.Context, bridge.Token | None]:
        worker = await bridge.spawn_blocking(bridge.current_context)
        return worker, bridge.current_context().token

    worker, token = pe.run(main)
    assert (worker.runtime, worker.role, worker.can_block) == ("pet_executor", "worker", True)
    assert worker.token == token


def test_on_a_plain_thread_while_a_run_goes_on_elsewhere() -> None:
    async def main() -> bridge.Context:
        seen: list[bridge.Context] = []
        in_thread(lambda: seen.append(bridge.current_context()))
        return seen[0]

    assert pe.run(main) == bridge.Context(runtime=None, role="plain")


def test_after_the_run_finished() -> None:
    async def main() -> bridge.Token | None:
        return bridge.current_context().token

    token = pe.run(main)
    assert token is not None
    assert bridge.current_context().runtime is None
    assert bridge.current_context().role == "plain"
    with pytest.raises(bridge.RunFinishedError, match="has finished"):
        token.run_sync_soon_threadsafe(print)
    # ... and from another thread too
    errors: list[BaseException] = []

    def use() -> None:
        try:
            token.run_sync_soon_threadsafe(print)
        except bridge.RunFinishedError as exc:
            errors.append(exc)

    in_thread(use)
    assert len(errors) == 1


def test_a_callback_that_fails_is_logged_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> str:
        token = bridge.current_context().token
        assert token is not None
        done = pe.Event()

        def fails() -> None:
            raise RuntimeError("callback failed")

        token.run_sync_soon_threadsafe(fails)
        token.run_sync_soon_threadsafe(done.set)
        await done.wait()
        return "still running"

    assert pe.run(main) == "still running"
    assert "callback failed" in caplog.text


# -- nested runs ----------------------------------------------------------------


async def _noop() -> None:
    pass


def test_run_inside_asyncio_raises_nested_runtime_error() -> None:
    async def main() -> None:
        pe.run(_noop)

    with pytest.raises(bridge.NestedRuntimeError, match="running asyncio's scheduler") as info:
        asyncio.run(main())
    assert info.value.code == "BRG002"
    assert 'adapters.call("pet_executor", work)' in str(info.value)


def test_run_inside_an_asyncio_callback_raises_nested_runtime_error() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[BaseException] = loop.create_future()

        def callback() -> None:
            try:
                pe.run(_noop)
            except BaseException as exc:
                future.set_result(exc)

        loop.call_soon(callback)
        error = await future
        assert isinstance(error, bridge.NestedRuntimeError)
        assert "in a callback" in str(error)

    asyncio.run(main())


@pytest.mark.skipif(importlib.util.find_spec("trio") is None, reason="trio is not installed")
def test_run_inside_trio_raises_nested_runtime_error() -> None:
    import trio

    async def main() -> None:
        pe.run(_noop)

    with pytest.raises(bridge.NestedRuntimeError, match="running trio's scheduler"):
        trio.run(main)


@pytest.mark.skipif(
    unavailable_reason("curio") is not None, reason="curio is unavailable on this Python"
)
def test_run_inside_curio_raises_nested_runtime_error() -> None:
    import curio

    async def main() -> None:
        pe.run(_noop)

    with pytest.raises(bridge.NestedRuntimeError, match="running curio's scheduler"):
        curio.run(main)


def test_run_inside_pet_executor_raises_nested_runtime_error() -> None:
    async def main() -> None:
        with pytest.raises(bridge.NestedRuntimeError, match="running pet_executor's scheduler"):
            pe.run(_noop)

    pe.run(main)


def test_run_inside_a_pet_executor_callback_raises_nested_runtime_error() -> None:
    async def main() -> None:
        token = bridge.current_context().token
        assert token is not None
        errors: list[BaseException] = []
        done = pe.Event()

        def callback() -> None:
            try:
                pe.run(_noop)
            except bridge.NestedRuntimeError as exc:
                errors.append(exc)
            done.set()

        token.run_sync_soon_threadsafe(callback)
        await done.wait()
        assert "in a callback" in str(errors[0])

    pe.run(main)


def test_a_run_on_a_worker_thread_of_another_runtime_is_allowed() -> None:
    async def work() -> str:
        return bridge.current_context().runtime or "none"

    async def main() -> str:
        return await asyncio.to_thread(pe.run, work)

    assert asyncio.run(main()) == "pet_executor"
