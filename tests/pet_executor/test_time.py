"""Time and cancel scopes: clocks, sleep, timeout, shield."""

from __future__ import annotations

import math
import threading
import time

import pytest

import pet_executor as pe

from ._helpers import in_thread


def test_a_one_hour_timeout_under_the_test_clock_takes_well_under_a_second() -> None:
    cleanup: list[float] = []

    async def two_hours() -> None:
        try:
            await pe.sleep(2 * 3600)
        finally:
            cleanup.append(pe.now())

    async def main() -> float:
        with pytest.raises(TimeoutError, match="3600"), pe.timeout(3600):
            await two_hours()
        return pe.now()

    started = time.perf_counter()
    ended_at = pe.run(main, clock=pe.MockClock(autojump=True))
    elapsed = time.perf_counter() - started
    assert ended_at == 3600.0
    assert cleanup == [3600.0], "the inner work's cleanup ran before TimeoutError"
    assert elapsed < 1.0


def test_sleeps_wake_in_deadline_order_under_the_test_clock() -> None:
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await pe.sleep(seconds)
        woke.append((name, pe.now()))

    async def main() -> None:
        await pe.join(sleeper("c", 30), sleeper("a", 10), sleeper("b", 20), sleeper("d", 30))
        await pe.sleep_until(100)
        woke.append(("until", pe.now()))

    pe.run(main, clock=pe.MockClock(autojump=True))
    assert woke == [("a", 10), ("b", 20), ("c", 30), ("d", 30), ("until", 100)]


def test_mock_clock_without_autojump_moves_only_when_jumped() -> None:
    clock = pe.MockClock(start=5.0)

    async def jumper() -> None:
        await pe.sleep(0)
        clock.jump(2.5)

    async def main() -> float:
        handle = pe.spawn(jumper)
        await pe.sleep(2.5)
        await handle
        return pe.now()

    assert pe.run(main, clock=clock) == 7.5
    with pytest.raises(ValueError, match="backwards"):
        clock.jump(-1)


def test_mock_clock_jumped_from_another_thread_wakes_the_kernel() -> None:
    clock = pe.MockClock()

    async def main() -> float:
        handle = pe.spawn(pe.sleep, 60)
        await pe.sleep(0)  # the sleeper runs first and parks on its timer
        thread = threading.Thread(target=clock.jump, args=(60,))
        thread.start()
        await handle  # the kernel idles: no timer is due on a clock that stands still
        thread.join()
        return pe.now()

    assert pe.run(main, clock=clock) == 60.0


def test_sleeping_forever_is_cancellable_and_does_not_move_the_test_clock_to_infinity() -> None:
    async def main() -> float:
        with pytest.raises(TimeoutError), pe.timeout(30):
            await pe.sleep(math.inf)
        return pe.now()

    assert pe.run(main, clock=pe.MockClock(autojump=True)) == 30.0


def test_real_sleep_takes_about_that_long() -> None:
    async def main() -> float:
        start = pe.now()
        await pe.sleep(0.02)
        return pe.now() - start

    assert pe.run(main) >= 0.02


def test_timeout_that_does_not_expire_returns_normally() -> None:
    async def main() -> tuple[str, bool]:
        with pe.timeout(10) as scope:
            await pe.sleep(1)
        return "done", scope.cancelled_caught

    assert pe.run(main, clock=pe.MockClock(autojump=True)) == ("done", False)


def test_timeout_at_uses_an_absolute_deadline() -> None:
    async def main() -> float:
        with pytest.raises(TimeoutError), pe.timeout_at(42):
            await pe.Event().wait()
        return pe.now()

    assert pe.run(main, clock=pe.MockClock(autojump=True)) == 42.0


def test_cancel_scope_with_a_deadline_moves_on_silently() -> None:
    async def main() -> tuple[bool, float]:
        with pe.CancelScope(deadline=pe.now() + 5) as scope:
            await pe.sleep(100)
        return scope.cancelled_caught, pe.now()

    assert pe.run(main, clock=pe.MockClock(autojump=True)) == (True, 5.0)


def test_nested_timeouts_the_inner_one_fires() -> None:
    async def main() -> str:
        with pe.timeout(100):
            with pytest.raises(TimeoutError), pe.timeout(1):
                await pe.sleep(50)
            await pe.sleep(10)
        return f"outer scope survived at {pe.now()}"

    assert pe.run(main, clock=pe.MockClock(autojump=True)) == "outer scope survived at 11.0"


def test_an_expired_outer_timeout_passes_through_an_inner_one() -> None:
    async def main() -> float:
        with pytest.raises(TimeoutError, match="after 1 s"), pe.timeout(1), pe.timeout(100):
            await pe.sleep(50)
        return pe.now()

    assert pe.run(main, clock=pe.MockClock(autojump=True)) == 1.0


def test_an_aborted_task_is_not_turned_into_a_timeout() -> None:
    async def child() -> None:
        with pe.timeout(100):
            await pe.Event().wait()

    async def main() -> None:
        handle = pe.spawn(child)
        await pe.sleep(0)
        handle.abort()
        with pytest.raises(pe.Cancelled):
            await handle

    pe.run(main, clock=pe.MockClock(autojump=True))


def test_shield_holds_off_a_timeout_until_it_ends() -> None:
    events: list[tuple[str, float]] = []

    async def body() -> None:
        with pe.shield():
            await pe.sleep(5)
            events.append(("shielded sleep done", pe.now()))
        await pe.sleep(0)
        events.append(("never", pe.now()))

    async def main() -> None:
        with pytest.raises(TimeoutError), pe.timeout(1):
            await body()

    pe.run(main, clock=pe.MockClock(autojump=True))
    assert events == [("shielded sleep done", 5.0)]


def test_shield_holds_off_an_abort() -> None:
    events: list[str] = []

    async def child(release: pe.Event) -> None:
        with pe.shield():
            await release.wait()
            events.append("shielded part finished")
        events.append("after the shield")  # sync code still runs...
        await pe.sleep(0)  # ...but the next await is cancelled
        events.append("never")

    async def main() -> None:
        release = pe.Event()
        handle = pe.spawn(child, release)
        await pe.sleep(0)
        handle.abort()
        await pe.sleep(0)
        assert not handle.done()
        release.set()
        with pytest.raises(pe.Cancelled):
            await handle

    pe.run(main)
    assert events == ["shielded part finished", "after the shield"]


def test_cancel_scope_cancelled_from_another_thread() -> None:
    async def main() -> bool:
        with pe.CancelScope() as scope:
            in_thread(scope.cancel)
            await pe.Event().wait()
        return scope.cancelled_caught

    assert pe.run(main)


def test_cancel_scope_misuse_is_reported() -> None:
    import bridge

    with pytest.raises(bridge.NoRuntimeError, match="outside a pet_executor task"), pe.timeout(1):
        pass

    async def main() -> None:
        scope = pe.CancelScope()
        with scope:
            pass
        with pytest.raises(RuntimeError, match="only once"), scope:
            pass

    pe.run(main)


def test_nan_durations_are_refused() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="NaN"):
            await pe.sleep(math.nan)
        with pytest.raises(ValueError, match="NaN"):
            pe.timeout(math.nan)

    pe.run(main)


def test_many_finished_timeouts_do_not_pile_up() -> None:
    async def main() -> int:
        for _ in range(1000):
            with pe.timeout(3600):
                await pe.sleep(0)
        from pet_executor.lowlevel import current_kernel

        kernel = current_kernel()
        assert kernel is not None
        return len(kernel._timers)

    assert pe.run(main, clock=pe.MockClock()) < 200


def test_autojump_threshold_longer_than_the_main_threads_idle_slice() -> None:
    """On the main thread the kernel idles in short slices (so Ctrl-C is never
    lost); the test clock still jumps once the whole threshold has passed."""
    assert threading.current_thread() is threading.main_thread(), "the case needs the main thread"

    async def main() -> float:
        await pe.sleep(3600)
        return pe.now()

    started = time.perf_counter()
    assert pe.run(main, clock=pe.MockClock(autojump=True, autojump_threshold=0.25)) == 3600.0
    elapsed = time.perf_counter() - started
    assert 0.25 <= elapsed < 5.0, elapsed
