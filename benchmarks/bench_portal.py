"""Greenlet portals, issue 4's "Portals" benchmarks: what a portal costs and
what it saves, against greenback (the peer that does the same with greenlets).

- ``portal_reentry``: sync code in a task awaits a coroutine that finishes
  without suspending, on the task's own loop: ``bridge.block_on`` through the
  task's portal against ``greenback.await_``, on asyncio and trio;
- ``portal_suspend``: what a portal adds to each suspension of its task
  (``await sleep(0)`` with a portal against the same task without one), and
  greenback's portal doing the same;
- ``portal_memory``: memory per task suspended in a plain ``await``, without
  and with a portal, and per task whose sync code is suspended in the portal
  (it then holds a greenlet).

Every row gets its portal the way a program started elsewhere would:
``await bridge.ensure_portal()`` (``await greenback.ensure_portal()``) first,
inside the task the harness runs the row in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from benchmarks import Group, Timer

#: Suspensions per timed call in ``portal_suspend``.
SWITCHES = 1_000
#: Tasks suspended at once in ``portal_memory``.
TASKS = 2_000


async def noop() -> int:
    return 1


async def _with_bridge_portal() -> None:
    import bridge

    await bridge.ensure_portal()
    if not bridge.current_context().portal:
        raise RuntimeError("ensure_portal() gave the benchmark's task no portal")


# =============================================================================
# 1. Re-entry of a coroutine that does not suspend
# =============================================================================

reentry = Group(
    "portal_reentry",
    "sync code in a task awaits noop() on the task's own loop: bridge.block_on through the "
    "task's portal against greenback.await_",
)


@reentry.case(
    "bridge.block_on(noop) from sync code, task with a portal  [trio]",
    key="bridge_trio",
    inside="trio",
    goal=">= 2x faster than greenback_trio",
)
@reentry.case(
    "bridge.block_on(noop) from sync code, task with a portal  [asyncio]",
    key="bridge_asyncio",
    inside="asyncio",
    goal=">= 2x faster than greenback_asyncio",
)
async def bridge_reentry(timer: Timer) -> None:
    import bridge

    await _with_bridge_portal()
    block = bridge.block_on
    timer.time(lambda: block(noop))


@reentry.case(
    "greenback.await_(noop()) from sync code, after greenback.ensure_portal()  [trio]",
    key="greenback_trio",
    inside="trio",
    requires=("greenback",),
)
@reentry.case(
    "greenback.await_(noop()) from sync code, after greenback.ensure_portal()  [asyncio]",
    key="greenback_asyncio",
    inside="asyncio",
    requires=("greenback",),
)
async def greenback_reentry(timer: Timer) -> None:
    import greenback

    await greenback.ensure_portal()
    await_ = greenback.await_
    timer.time(lambda: await_(noop()))


# =============================================================================
# 2. The cost of a portal per suspension of its task
# =============================================================================

suspend = Group(
    "portal_suspend",
    f"what a portal adds per suspension of its task: {SWITCHES:,} x await sleep(0), "
    "per suspension, without a portal, with the bridge's and with greenback's",
)


def _switches() -> Callable[[], Awaitable[None]]:
    """``SWITCHES`` x ``await sleep(0)`` of the running runtime."""
    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio

        sleep: Callable[[float], Awaitable[object]] = trio.sleep
    else:
        import asyncio

        sleep = asyncio.sleep
    switches = range(SWITCHES)

    async def run() -> None:
        for _ in switches:
            await sleep(0)

    return run


@suspend.case(
    "await trio.sleep(0), no portal  [trio]", key="plain_trio", inside="trio", ops=SWITCHES
)
@suspend.case(
    "await asyncio.sleep(0), no portal  [asyncio]",
    key="plain_asyncio",
    inside="asyncio",
    ops=SWITCHES,
)
async def plain_suspend() -> Callable[[], Awaitable[None]]:
    return _switches()


@suspend.case(
    "await trio.sleep(0), the task has a bridge portal  [trio]",
    key="portal_trio",
    inside="trio",
    ops=SWITCHES,
    goal="<= 3 µs over plain_trio",
    vs="greenback_trio_suspend",
)
@suspend.case(
    "await asyncio.sleep(0), the task has a bridge portal  [asyncio]",
    key="portal_asyncio",
    inside="asyncio",
    ops=SWITCHES,
    goal="<= 3 µs over plain_asyncio",
    vs="greenback_asyncio_suspend",
)
async def portal_suspend(timer: Timer) -> None:
    await _with_bridge_portal()
    await timer.time_async(_switches())


@suspend.case(
    "await trio.sleep(0), the task has a greenback portal  [trio]",
    key="greenback_trio_suspend",
    inside="trio",
    ops=SWITCHES,
    requires=("greenback",),
    vs="plain_trio",
)
@suspend.case(
    "await asyncio.sleep(0), the task has a greenback portal  [asyncio]",
    key="greenback_asyncio_suspend",
    inside="asyncio",
    ops=SWITCHES,
    requires=("greenback",),
    vs="plain_asyncio",
)
async def greenback_suspend(timer: Timer) -> None:
    import greenback

    await greenback.ensure_portal()
    await timer.time_async(_switches())


# =============================================================================
# 3. Memory per suspended task
# =============================================================================

memory = Group("portal_memory", f"memory per suspended asyncio task ({TASKS:,} at once)")


async def _bytes_per_task(how: str) -> float:
    """Start ``TASKS`` tasks that each suspend on one event (``how``: in a
    plain await without a portal, in a plain await with one, or in sync code
    through the portal); return the traced memory they hold, per task."""
    import asyncio
    import tracemalloc

    import bridge

    async def parked(arrived: Callable[[], None], release: asyncio.Event) -> None:
        if how != "no portal":
            await bridge.ensure_portal()
        arrived()
        if how == "sync code":
            bridge.block_on(release.wait())
        else:
            await release.wait()

    async def suspend(count: int, measure: bool) -> float:
        release, all_in = asyncio.Event(), asyncio.Event()
        left = [count]

        def arrived() -> None:
            left[0] -= 1
            if not left[0]:
                all_in.set()

        if measure:
            tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            tasks = [asyncio.ensure_future(parked(arrived, release)) for _ in range(count)]
            await all_in.wait()
            during = tracemalloc.get_traced_memory()[0]
        finally:
            if measure:
                tracemalloc.stop()
            release.set()
        await asyncio.gather(*tasks)
        return (during - before) / count

    await suspend(10, measure=False)  # warm: imports, the portal's pools
    return await suspend(TASKS, measure=True)


@memory.metric("suspended in await, no portal  [asyncio]", unit="B/task", inside="asyncio")
async def memory_plain() -> float:
    return await _bytes_per_task("no portal")


@memory.metric(
    "suspended in await, with a portal  [asyncio]",
    unit="B/task",
    inside="asyncio",
    vs="memory_plain",
)
async def memory_portal() -> float:
    return await _bytes_per_task("plain await")


@memory.metric(
    "suspended in sync code, in bridge.block_on through the portal (holds a greenlet)  [asyncio]",
    unit="B/task",
    inside="asyncio",
    vs="memory_plain",
)
async def memory_portal_sync() -> float:
    return await _bytes_per_task("sync code")
