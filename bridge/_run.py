"""Run a program: ``bridge.run`` and ``bridge.ensure_portal``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._context import current_context, owned_run
from ._errors import Fix, NestedRuntimeError
from ._registry import get
from ._work import describe

T = TypeVar("T")

__all__ = ("ensure_portal", "refuse_nested_run", "run")


def refuse_nested_run(runtime: str, api: str) -> None:
    """Raise ``NestedRuntimeError`` if this thread already runs a scheduler."""
    here = current_context()
    if here.role == "event_loop":
        raise NestedRuntimeError(
            f"{api} would start {runtime} on a thread that is running {here.runtime}'s "
            f"event loop{' (in a task)' if here.in_task else ''}.",
            fixes=(
                Fix(f"{api}  # inside {here.runtime}", "await main()  # in the running loop"),
                Fix(
                    f"{api}  # inside {here.runtime}",
                    f'await adapters.call("{runtime}", main)  # on {runtime}, from {here.runtime}',
                ),
            ),
        )


def run(
    async_fn: Callable[..., Awaitable[T]],
    *args: Any,
    runtime: str = "asyncio",
    portals: bool = True,
    **runtime_options: Any,
) -> T:
    """Run ``async_fn(*args)`` as the main task of a new run of ``runtime``
    on this thread, and return its result: the one entry point for every
    runtime (uvloop: ``runtime="asyncio", loop_factory=uvloop.new_event_loop``).

    With ``portals`` (the default), every task of the run has a greenlet
    portal, so sync code called from it may re-enter the loop with
    ``bridge.block_on``.
    """
    refuse_nested_run(runtime, f"bridge.run({describe(async_fn)}, runtime={runtime!r})")
    adapter = get(runtime)
    with owned_run(runtime):
        return adapter.run(async_fn, *args, portals=portals, **runtime_options)


async def ensure_portal() -> None:
    """Give the current task a greenlet portal, for a program started some
    other way than ``bridge.run`` (asyncio and trio; elsewhere a clear error)."""
    from ._portal import ensure_portal as ensure

    await ensure()
