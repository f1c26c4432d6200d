"""One round of one row, inside its worker: the Timer and the places a row runs.

Theory of operation. A round of a timed row
1. enters the row's place (``inside``): the worker's main thread, a fresh
   thread, or a new run of a runtime (one per round), and calls the row's
   function there;
2. the function gives a callable to time (returned, or yielded by a
   generator whose rest is the teardown), or times itself through the Timer;
3. the Timer warms the callable up for a fifth of the budget, in batches that
   double, which also estimates the cost of a call; it then picks a batch
   size so that one sample (one pair of clock reads) covers at least
   ``SAMPLE_S``, keeping the clock's own cost under 1%, and takes as many
   samples as the rest of the budget allows, at least ``MIN_SAMPLES``;
4. the round's value is the median sample per operation (sample / batch / ops).
A metric row's function just returns the round's value.
"""

from __future__ import annotations

import gc
import inspect
import math
import sys
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Generator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ._api import Case, Skip
from ._stats import sample_stats

if TYPE_CHECKING:
    # Imported where a row runs inside asyncio only: a plain-thread row's
    # worker should import no more than the row itself does.
    import asyncio

__all__ = ("MIN_SAMPLES", "SAMPLE_S", "Timer", "Timing", "run_round")

T = TypeVar("T")

WARMUP_FRACTION = 0.2
SAMPLE_S = 50e-6
MIN_SAMPLES = 5
MAX_SAMPLES = 10_000


@dataclass(frozen=True)
class Timing:
    """One round of a timed row; times in seconds per operation."""

    value: float
    min: float
    p90: float
    samples: int
    batch: int
    calls: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Timer:
    """Times one callable per round, in whatever thread or task calls it.

    A row's function that takes a parameter gets the round's Timer, to time
    from where the harness cannot reach, e.g.::

        @group.case("anyio.from_thread.run(noop)  [anyio worker]", inside="asyncio")
        async def anyio_from_thread(timer):
            await anyio.to_thread.run_sync(timer.time, lambda: anyio.from_thread.run(noop))
    """

    def __init__(self, budget: float, *, ops: int = 1) -> None:
        #: Seconds this round may spend measuring.
        self.budget = budget
        #: Operations per call: results are reported per operation.
        self.ops = ops
        #: The round's result, once a ``time*`` method ran.
        self.timing: Timing | None = None

    def time(self, fn: Callable[[], object]) -> float:
        """Warm up and time calls to ``fn()``; return the median seconds per operation."""
        self._check_unused()
        first = fn()
        if inspect.isawaitable(first):
            _discard(first)
            raise TypeError(
                f"{_name(fn)}() returned an awaitable; to await it, run the row inside "
                f"a runtime (inside='asyncio', 'trio', ...) and use time_async"
            )
        per_call = self._warm_up_sync(fn)
        batch, n = self._plan(per_call)
        rng = range(batch)
        out = [0] * n
        pc = time.perf_counter_ns
        gc.collect()
        for i in range(n):
            t0 = pc()
            for _ in rng:
                fn()
            out[i] = pc() - t0
        return self._record(out, batch)

    async def time_async(self, afn: Callable[[], Awaitable[object]]) -> float:
        """Warm up and time ``await afn()`` in the running task; return the
        median seconds per operation. Works under any runtime: it only awaits
        what ``afn`` returns."""
        self._check_unused()
        per_call = await self._warm_up_async(afn)
        batch, n = self._plan(per_call)
        rng = range(batch)
        out = [0] * n
        pc = time.perf_counter_ns
        gc.collect()
        for i in range(n):
            t0 = pc()
            for _ in rng:
                await afn()
            out[i] = pc() - t0
        return self._record(out, batch)

    def _check_unused(self) -> None:
        if self.timing is not None:
            raise RuntimeError("a Timer times one callable per round; this one already did")

    def _warm_up_sync(self, fn: Callable[[], object]) -> float:
        warm = self.budget * WARMUP_FRACTION
        batch, spent, batches = 1, 0.0, 0
        while True:
            t0 = time.perf_counter()
            for _ in range(batch):
                fn()
            dt = time.perf_counter() - t0
            spent, batches = spent + dt, batches + 1
            per_call = dt / batch
            if batches >= 2 and spent >= warm:
                return per_call
            batch = _next_batch(batch, per_call, warm - spent)

    async def _warm_up_async(self, afn: Callable[[], Awaitable[object]]) -> float:
        warm = self.budget * WARMUP_FRACTION
        batch, spent, batches = 1, 0.0, 0
        while True:
            t0 = time.perf_counter()
            for _ in range(batch):
                await afn()
            dt = time.perf_counter() - t0
            spent, batches = spent + dt, batches + 1
            per_call = dt / batch
            if batches >= 2 and spent >= warm:
                return per_call
            batch = _next_batch(batch, per_call, warm - spent)

    def _plan(self, per_call: float) -> tuple[int, int]:
        """(calls per sample, samples) for the rest of the budget."""
        per_call = max(per_call, 1e-9)
        batch = max(1, math.ceil(SAMPLE_S / per_call))
        n = int(self.budget * (1 - WARMUP_FRACTION) / (batch * per_call))
        return batch, min(MAX_SAMPLES, max(MIN_SAMPLES, n))

    def _record(self, samples_ns: list[int], batch: int) -> float:
        scale = 1e-9 / (batch * self.ops)
        stats = sample_stats([s * scale for s in samples_ns])
        self.timing = Timing(
            value=stats["median"],
            min=stats["min"],
            p90=stats["p90"],
            samples=len(samples_ns),
            batch=batch,
            calls=len(samples_ns) * batch,
        )
        return self.timing.value


def _next_batch(batch: int, per_call: float, remaining: float) -> int:
    # Double, but do not overshoot the warm-up budget by much.
    if per_call <= 0:
        return batch * 2
    return max(1, min(batch * 2, int(remaining / per_call)))


def _name(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _discard(awaitable: object) -> None:
    # Close an un-awaited coroutine so it does not warn "never awaited".
    close = getattr(awaitable, "close", None)
    if inspect.iscoroutine(awaitable) and close is not None:
        close()


# ---------------------------------------------------------------------------
# Places a row runs (``inside``).


def _run_asyncio(
    main: Callable[[], Coroutine[Any, Any, T]],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    import asyncio

    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(main())
    if loop_factory is None:  # pragma: no cover - Python 3.10
        return asyncio.run(main())
    loop = loop_factory()  # pragma: no cover - Python 3.10
    try:  # pragma: no cover
        return loop.run_until_complete(main())
    finally:  # pragma: no cover
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _run_uvloop(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    import uvloop

    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return _run_asyncio(main, factory)


def _run_trio(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    import trio

    return trio.run(main)


def _run_curio(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    import curio

    result: T = curio.run(main)
    return result


def _run_pet_executor(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    import pet_executor

    run = getattr(pet_executor, "run", None)
    if run is None:
        raise Skip("pet_executor.run does not exist yet")
    result: T = run(main)
    return result


def _run_in_thread(main: Callable[[], T]) -> T:
    box: list[Any] = []

    def target() -> None:
        try:
            box.append((True, main()))
        except BaseException as exc:
            box.append((False, exc))

    thread = threading.Thread(target=target, name="bench-plain-thread")
    thread.start()
    thread.join()
    ok, value = box[0]
    if not ok:
        raise value
    result: T = value
    return result


_RUNTIMES: dict[str, Callable[[Callable[[], Coroutine[Any, Any, Any]]], Any]] = {
    "asyncio": _run_asyncio,
    "uvloop": _run_uvloop,
    "trio": _run_trio,
    "curio": _run_curio,
    "pet_executor": _run_pet_executor,
}


# ---------------------------------------------------------------------------
# One round of a row.


def run_round(case: Case, budget: float) -> dict[str, Any]:
    """Run one round of ``case`` in this process; return its result as plain data:
    ``value`` (seconds per operation, or the metric's number) and, for timed
    rows, ``min``, ``p90``, ``samples``, ``batch``, ``calls``. Raises what the
    row raises (``Skip`` included)."""
    timer = Timer(budget, ops=case.ops)
    result: Timing | float
    if case.inside is None:
        result = _drive_sync(case, timer)
    elif case.inside == "thread":
        result = _run_in_thread(lambda: _drive_sync(case, timer))
    else:
        result = _RUNTIMES[case.inside](lambda: _drive_async(case, timer))
    if isinstance(result, Timing):
        return result.as_dict()
    return {"value": result}


def _call_row(case: Case, timer: Timer) -> Any:
    return case.fn(timer) if case.takes_timer else case.fn()


def _drive_sync(case: Case, timer: Timer) -> Timing | float:
    produced = _call_row(case, timer)
    if inspect.isawaitable(produced) or inspect.isasyncgen(produced):
        _discard(produced)
        raise TypeError(
            f"row {case.label!r}: {case.fn.__name__} is async, but the row runs on a "
            f"plain thread; declare inside='asyncio' (or 'trio', 'curio', ...)"
        )
    if case.kind == "metric":
        return _number(case, produced)
    if inspect.isgenerator(produced):
        target = _first(case, produced)
        try:
            timer.time(target)
        except BaseException:
            produced.close()
            raise
        _finish(case, produced)
    elif produced is not None:
        timer.time(_callable(case, produced))
    return _timing(case, timer)


async def _drive_async(case: Case, timer: Timer) -> Timing | float:
    produced = _call_row(case, timer)
    if inspect.isawaitable(produced):
        produced = await produced
    if case.kind == "metric":
        return _number(case, produced)
    if inspect.isasyncgen(produced):
        await _time_async_generator(case, produced, timer)
    elif inspect.isgenerator(produced):
        target = _first(case, produced)
        try:
            await _time_in_task(target, timer)
        except BaseException:
            produced.close()
            raise
        _finish(case, produced)
    elif produced is not None:
        await _time_in_task(_callable(case, produced), timer)
    return _timing(case, timer)


async def _time_in_task(target: Callable[[], object], timer: Timer) -> None:
    if inspect.iscoroutinefunction(target):
        await timer.time_async(target)
        return
    # One call tells whether calls give awaitables (a lambda around a coroutine).
    first = target()
    if inspect.isawaitable(first):
        await first
        await timer.time_async(cast("Callable[[], Awaitable[object]]", target))
    else:
        timer.time(target)


def _first(case: Case, gen: Generator[Any, Any, Any]) -> Callable[[], object]:
    try:
        return _callable(case, next(gen))
    except StopIteration:
        raise TypeError(f"row {case.label!r}: the generator ended without yielding") from None


async def _time_async_generator(case: Case, agen: AsyncGenerator[Any, Any], timer: Timer) -> None:
    try:
        target = await agen.__anext__()
    except StopAsyncIteration:
        raise TypeError(f"row {case.label!r}: the generator ended without yielding") from None
    try:
        await _time_in_task(_callable(case, target), timer)
    except BaseException:
        await agen.aclose()
        raise
    try:
        await agen.__anext__()
    except StopAsyncIteration:
        return
    await agen.aclose()
    raise TypeError(f"row {case.label!r}: the generator yielded more than once")


def _finish(case: Case, gen: Generator[Any, Any, Any]) -> None:
    try:
        next(gen)
    except StopIteration:
        return
    gen.close()
    raise TypeError(f"row {case.label!r}: the generator yielded more than once")


def _callable(case: Case, target: object) -> Callable[[], object]:
    if not callable(target):
        raise TypeError(
            f"row {case.label!r} gave {type(target).__name__} {target!r}; "
            f"return (or yield) the callable to time, e.g. `return bridge.current_context`"
        )
    return target


def _timing(case: Case, timer: Timer) -> Timing:
    if timer.timing is None:
        raise TypeError(
            f"row {case.label!r} gave nothing to time: return a callable, yield one, "
            f"or take a timer and call timer.time(fn) / await timer.time_async(afn)"
        )
    return timer.timing


def _number(case: Case, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"metric {case.label!r} returned {type(value).__name__}, not a number in {case.unit}"
        )
    return float(value)
