"""Cross-runtime await: ``adapters.call``.

The host is the runtime of the calling task; the target is a runtime name
(its shared pet, or a plain await when it is the host's own runtime), a token
(that exact run) or a pet executor. The work runs as a task of the target's
run; the host task awaits its ``WorkFuture`` natively, so the result, the
exception or the cancellation comes back in the host's own terms, and
cancelling the host task cancels the work and waits for its cleanup.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from bridge._block_on import submit_to
from bridge._context import Token, current_context
from bridge._errors import Fix, NoRuntimeError
from bridge._registry import get
from bridge._work import WorkFuture, as_async_callable, await_work, describe

if TYPE_CHECKING:
    from pet_executor._host import PetExecutor

T = TypeVar("T")

__all__ = ("call",)


async def call(
    target: str | Token | PetExecutor, async_fn: Callable[..., Awaitable[T]], *args: Any
) -> T:
    """Run ``async_fn(*args)`` on ``target`` and await it from this task."""
    work = as_async_callable(async_fn, args, api="adapters.call")
    here = current_context()
    if here.role != "event_loop" or here.runtime is None:
        raise NoRuntimeError(
            f"adapters.call({describe(async_fn)}) must be awaited in a task; "
            f"this thread is {here.role}.",
            fixes=(
                Fix(
                    f"adapters.call(..., {describe(async_fn)})",
                    f"bridge.block_on({describe(async_fn)})",
                ),
            ),
        )
    host = get(here.runtime)
    context = contextvars.copy_context()
    label = describe(async_fn)
    future: WorkFuture[T]
    if isinstance(target, str):
        get(target)  # unknown or unavailable: a clear error
        if target == here.runtime:
            return await work()
        from bridge._pets import pet

        future = pet(target).submit_work(work, context, label)
    elif isinstance(target, Token):
        if here.token is not None and target == here.token:
            return await work()
        future = submit_to(target, get(target.runtime), work, context, label)
    else:
        future = target.submit_work(work, context, label)
    return await await_work(host, future)
