"""The fast paths keep the slow paths' promises.

- a pet's inbox: one wake-up for a batch of calls, and no call stranded, even
  when the pet closes or its run ends while callers are submitting;
- asyncio work tasks deliver their own outcome and take their first step at
  once (eagerly on 3.12+): the step is the task's own, and every way a task
  can end, including before its first step, still gives one outcome;
- ``AsyncioAdapter.await_future``: one loop future, the documented cancel
  semantics;
- ``WorkFuture`` without a condition until one is asked for: everything
  written for ``concurrent.futures`` still works.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import sys
import threading
import time
from typing import Any

import pytest

import bridge
from adapters._asyncio import AsyncioAdapter, AsyncioToken
from bridge import GuestCancelledError, PetClosedError, RunFinishedError
from bridge._work import WorkFuture
from pet_executor._host import PetExecutor

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


async def noop() -> int:
    return 1


# --- the pet's inbox -----------------------------------------------------------


def test_many_callers_share_wake_ups_and_every_call_is_answered() -> None:
    drains = 0
    with PetExecutor("asyncio", name="pet-inbox") as pet:
        drain = pet._drain

        def counting(run: Any) -> None:
            nonlocal drains
            drains += 1
            drain(run)

        pet._drain = counting  # type: ignore[method-assign]

        async def echo(value: int) -> int:
            await asyncio.sleep(0)
            return value

        futures = [pet.submit(echo, i) for i in range(500)]
        assert [f.result(10) for f in futures] == list(range(500))
    assert 1 <= drains < 500, "calls submitted together are started by one drain"


@pytest.mark.parametrize("ending", ["close", "run ends"])
def test_calls_racing_the_end_of_the_run_each_get_one_outcome(ending: str) -> None:
    """Callers keep submitting while the pet closes (or its loop is stopped
    under it): every call is answered, with its value or an error, and
    nobody waits forever."""
    pet = PetExecutor("asyncio", name="pet-race")
    outcomes: list[str] = []
    lock = threading.Lock()
    go = threading.Barrier(9)

    def caller() -> None:
        go.wait()
        for _ in range(300):
            try:
                future = pet.submit(noop)
            except PetClosedError:
                outcome = "refused"
            else:
                try:
                    outcome = f"value {future.result(10)}"
                except (PetClosedError, RunFinishedError) as exc:
                    outcome = type(exc).__name__
            with lock:
                outcomes.append(outcome)
            if outcome == "refused":
                return

    async def stop_the_loop() -> None:
        asyncio.get_running_loop().stop()

    pet.call(noop)
    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    go.wait()
    time.sleep(0.005)
    if ending == "close":
        pet.close()
    else:
        pet.submit(stop_the_loop)
    for thread in threads:
        thread.join(30)
    pet.close()
    assert not any(thread.is_alive() for thread in threads), "a caller waits forever"
    assert outcomes, "the callers ran"
    assert all(o in ("value 1", "refused", "PetClosedError", "RunFinishedError") for o in outcomes)


def test_a_new_run_gets_a_new_inbox() -> None:
    """After the run ended under it, the pet starts a new run whose inbox is
    not blocked by the old run's 'drain scheduled' flag."""
    pet = PetExecutor("asyncio", name="pet-rerun")
    try:

        async def stop_the_loop() -> None:
            asyncio.get_running_loop().stop()

        first = pet._run
        pet.call(noop)
        pet.submit(stop_the_loop)
        deadline = time.monotonic() + 10
        while pet._running() and time.monotonic() < deadline:
            time.sleep(0.001)
        for _ in range(3):
            assert pet.call(noop) == 1
        assert pet._run is not first
    finally:
        pet.close()


# --- asyncio work tasks --------------------------------------------------------


def test_the_first_step_is_the_tasks_own() -> None:
    """Taken at once, the first step still runs in the work's task and
    context: current_task() is the work's task, asyncio.timeout works there,
    and contextvars set there land in the work's context."""
    seen: list[object] = []

    async def first_step() -> str:
        task = asyncio.current_task()
        seen.append(task)
        VAR.set("set in the first step")
        if sys.version_info >= (3, 11):
            async with asyncio.timeout(10):
                pass
        return VAR.get()

    with PetExecutor("asyncio", name="pet-first-step") as pet:
        context = contextvars.copy_context()
        future = pet.submit_work(first_step, context, "first_step")
        assert future.result(10) == "set in the first step"
        assert context[VAR] == "set in the first step"
    assert isinstance(seen[0], asyncio.Task)


def test_a_work_task_takes_no_extra_turns_of_the_loop() -> None:
    turns = 0

    def counting_loop() -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        run_once = loop._run_once  # type: ignore[attr-defined]

        def counted() -> None:
            nonlocal turns
            turns += 1
            run_once()

        loop._run_once = counted  # type: ignore[attr-defined]
        return loop

    with PetExecutor("asyncio", name="pet-turns", loop_factory=counting_loop) as pet:
        pet.call(noop)
        before = turns
        for _ in range(50):
            pet.call(noop)
        assert turns - before <= 55, "one turn of the loop per call"


def _on_a_loop(body: Any) -> Any:
    """Run ``body(loop, token)`` as a callback of a running loop (where
    spawn_work runs), then drive the loop until its futures are done."""
    loop = asyncio.new_event_loop()
    result: list[Any] = []
    try:

        async def main() -> None:
            done = asyncio.Event()

            def callback() -> None:
                result.append(body(loop, AsyncioToken(loop)))
                done.set()

            loop.call_soon(callback)
            await done.wait()
            for _ in range(20):
                await asyncio.sleep(0)

        loop.run_until_complete(main())
    finally:
        loop.close()
    return result[0]


def test_cancel_requested_before_the_task_exists_runs_nothing() -> None:
    ran = False

    async def work() -> None:
        nonlocal ran
        ran = True

    def body(loop: asyncio.AbstractEventLoop, token: AsyncioToken) -> WorkFuture[None]:
        future: WorkFuture[None] = WorkFuture("work")
        assert future.claim()
        assert future.cancel()  # running, no canceller yet: a request
        AsyncioAdapter().spawn_work(token, work, contextvars.copy_context(), future)
        return future

    future = _on_a_loop(body)
    assert future.cancelled()
    assert not ran


def test_a_task_cancelled_before_its_first_step_still_delivers() -> None:
    """A task factory that queues something of its own keeps the first step
    from being taken at once; cancelled before that step, the task never
    runs the work, and the future still gets its one outcome."""

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        loop.call_soon(lambda: None)
        return task

    ran = False

    async def work() -> None:
        nonlocal ran
        ran = True

    def body(loop: asyncio.AbstractEventLoop, token: AsyncioToken) -> list[WorkFuture[None]]:
        loop.set_task_factory(factory)
        futures = []
        for request in (True, False):
            future: WorkFuture[None] = WorkFuture("work")
            assert future.claim()
            before = asyncio.all_tasks(loop)
            AsyncioAdapter().spawn_work(token, work, contextvars.copy_context(), future)
            (task,) = asyncio.all_tasks(loop) - before
            if request:
                future.cancel()  # the request: the task cancel it schedules comes too late
            task.cancel()
            futures.append(future)
        return futures

    requested, not_requested = _on_a_loop(body)
    assert not ran
    assert requested.cancelled()
    with pytest.raises(GuestCancelledError):
        not_requested.result(0)


def test_a_task_dropped_unfinished_delivers_run_finished() -> None:
    """A loop closed with the work's task pending: when the task's coroutine
    is closed (as its finaliser does), the future gets RunFinishedError."""
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    loop = asyncio.new_event_loop()
    future: WorkFuture[None] = WorkFuture("forever")
    assert future.claim()
    spawn = AsyncioAdapter().spawn_work
    loop.call_soon(spawn, AsyncioToken(loop), forever, contextvars.copy_context(), future)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert started.is_set()
    (task,) = asyncio.all_tasks(loop)
    loop.close()
    task._log_destroy_pending = False  # type: ignore[attr-defined]
    coro: Any = task.get_coro()
    coro.close()
    with pytest.raises(RunFinishedError, match="ended under it"):
        future.result(0)


def test_an_exception_ends_the_work_not_the_loop() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    with PetExecutor("asyncio", name="pet-fails") as pet:
        with pytest.raises(ValueError, match="boom") as info:
            pet.call(fails)
        assert "fails" in {entry.name for entry in info.traceback}
        assert pet.call(noop) == 1


# --- await_future ----------------------------------------------------------------


def test_await_future_waits_for_the_cleanup_unless_abandoning() -> None:
    adapter = AsyncioAdapter()

    async def main() -> None:
        for abandon in (False, True):
            future: WorkFuture[None] = WorkFuture("slow")
            assert future.claim()
            cleaned = threading.Event()
            asked = threading.Event()
            future.start(None, asked.set)

            def finish(f: WorkFuture[None] = future, c: threading.Event = cleaned) -> None:
                # The "work" notices the request, cleans up, then ends.
                time.sleep(0.05)
                c.set()
                f.deliver_cancelled("a test")

            waiter = asyncio.ensure_future(adapter.await_future(future, abandon_on_cancel=abandon))
            await asyncio.sleep(0)
            waiter.cancel()
            assert not future._cancel_requested
            thread = threading.Thread(target=finish)
            thread.start()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert future._cancel_requested
            assert cleaned.is_set() is (not abandon)
            thread.join()

    asyncio.run(main())


def test_await_future_results_errors_and_foreign_cancellation() -> None:
    adapter = AsyncioAdapter()

    async def main() -> None:
        done: concurrent.futures.Future[int] = concurrent.futures.Future()
        done.set_result(3)
        assert await adapter.await_future(done) == 3

        later: concurrent.futures.Future[int] = concurrent.futures.Future()
        threading.Timer(0.01, later.set_exception, args=(KeyError("k"),)).start()
        with pytest.raises(KeyError):
            await adapter.await_future(later)

        cancelled: concurrent.futures.Future[int] = concurrent.futures.Future()
        threading.Timer(0.01, cancelled.cancel).start()
        with pytest.raises(asyncio.CancelledError):
            await adapter.await_future(cancelled)

        here: concurrent.futures.Future[int] = concurrent.futures.Future()
        asyncio.get_running_loop().call_soon(here.set_result, 5)  # completed on the loop's thread
        assert await adapter.await_future(here) == 5

    asyncio.run(main())


# --- WorkFuture ------------------------------------------------------------------


def test_work_future_works_with_concurrent_futures() -> None:
    future: WorkFuture[int] = WorkFuture("compat")
    assert future.claim()
    seen: list[object] = []
    future.add_done_callback(lambda f: seen.append(f.result()))

    blocked: list[object] = []

    def exception_waiter() -> None:
        blocked.append(future.exception(10))  # Future's own wait, on the condition

    def wait_waiter() -> None:
        blocked.append(len(concurrent.futures.wait([future], 10).done))

    def result_waiter() -> None:
        blocked.append(future.result(10))

    threads = [threading.Thread(target=t) for t in (exception_waiter, wait_waiter, result_waiter)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    future.deliver_value(7)
    for thread in threads:
        thread.join(10)
    assert sorted(blocked, key=repr) == sorted([None, 1, 7], key=repr)
    assert seen == [7]
    pending: list[Any] = [future]
    assert list(concurrent.futures.as_completed(pending, 1)) == [future]
    assert "finished" in repr(future)
    late: list[object] = []
    future.add_done_callback(late.append)
    assert late == [future]


def test_work_future_timeouts_cancel_and_states() -> None:
    future: WorkFuture[int] = WorkFuture("states")
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(0.01)
    assert not future._blocked, "a timed-out wait leaves nothing behind"
    assert future.cancel()
    assert future.cancelled()
    assert not future.claim()
    with pytest.raises(concurrent.futures.CancelledError):
        future.result()
    future.deliver_value(1)  # ignored: the future is over
    assert future.cancelled()

    finished: WorkFuture[int] = WorkFuture("finished")
    assert finished.set_running_or_notify_cancel()
    with pytest.raises(RuntimeError):
        finished.set_running_or_notify_cancel()
    finished.set_result(2)
    with pytest.raises(concurrent.futures.InvalidStateError):
        finished.set_result(3)
    assert not finished.cancel()
    assert not finished.claim(), "a future failed already is not claimed (no error)"
    assert finished.result() == 2


def test_a_finished_call_leaves_no_cycle_behind() -> None:
    with PetExecutor("asyncio", name="pet-cycles") as pet:
        pet.call(noop)
        gc.collect()
        gc.disable()
        try:
            for _ in range(50):
                pet.call(noop)
            assert gc.collect() == 0, "each call's objects are freed by reference counting"
        finally:
            gc.enable()


def test_spawn_blocking_reuses_its_worker_and_keeps_the_marker_reset() -> None:
    import sniffio

    async def main() -> None:
        names = set()
        for _ in range(20):
            names.add(await bridge.spawn_blocking(lambda: threading.current_thread().name))
            marker = await bridge.spawn_blocking(sniffio.current_async_library_cvar.get)
            assert marker is None
        assert len(names) <= 2

    asyncio.run(main())
