"""Cross-runtime await: ``adapters.call``, ``adapters.iterate``, ``adapters.enter``.

Theory of operation. The host is the runtime of the calling task; the target
is a runtime name (its shared pet, or a plain await when it is the host's own
runtime), a token (that exact run) or a pet executor. Routing is by loop: a
target that is the caller's own run is a plain await. Otherwise the work runs
as a task of the target's run (``RuntimeAdapter.spawn_work``) and the host
task awaits its ``WorkFuture`` natively (``RuntimeAdapter.await_future``), so:

- a result or an exception comes back in the host task; the exception keeps
  its type and traceback and gains one note for the hop it crossed (the
  same note is never added twice to the same object);
- cancelling the host task cancels the guest task and waits for its cleanup;
  the host then sees its own runtime's cancellation;
- a guest task cancelled on the guest's side ends with
  :class:`~bridge.GuestCancelledError` (the work future decides, see
  ``bridge._work``), and a guest pet that closes under the call with
  :class:`~bridge.RunFinishedError`: never with the host's own cancellation.

Iterators and context managers of the guest run in one dedicated guest task
each (a pet's ``_Session``, the machinery of ``PetExecutor.iterate``/``enter``);
the host awaits each step. Cancelling the host during a step cancels that
task, so an async generator is finalised by the guest's rules, in the guest.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from _thread import get_ident as _get_ident
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from inspect import CO_COROUTINE
from types import FunctionType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from bridge._block_on import submit_to
from bridge._context import Context, Token, current_context
from bridge._errors import (
    Fix,
    GuestCancelledError,
    NoRuntimeError,
    PetClosedError,
    RunFinishedError,
)
from bridge._registry import RuntimeAdapter, get
from bridge._work import WorkFuture, as_async_callable, await_work, describe

if TYPE_CHECKING:
    from pet_executor._host import PetExecutor, _Session

T = TypeVar("T")

__all__ = (
    "GuestContextManager",
    "GuestIterator",
    "add_hop_note",
    "call",
    "enter",
    "hop_note",
    "iterate",
)

# -- routing ----------------------------------------------------------------------


def _host_context(api: str, what: str) -> Context:
    here = current_context()
    if here.role != "event_loop" or here.runtime is None or not here.in_task:
        where = "a loop callback" if here.role == "event_loop" else f"a {here.role} thread"
        raise NoRuntimeError(
            f"{api}({what}) must be awaited in a task of a running event loop; "
            f"this code runs in {where}.",
            fixes=(Fix(f"await {api}(..., {what})", f"bridge.block_on({what})  # from sync code"),),
        )
    return here


def _check_async_fn(api: str, target: object, fn: object) -> None:
    """Refuse a sync function or an async generator function up front: calling
    it in the guest would run sync code there, or return no awaitable."""
    # The common case, an ``async def`` function, in one attribute read: its
    # code says so (an async generator function's code has CO_ASYNC_GENERATOR,
    # never CO_COROUTINE).
    if type(fn) is FunctionType and fn.__code__.co_flags & CO_COROUTINE:
        return
    inner = fn
    while isinstance(inner, functools.partial):
        inner = inner.func
    if not (inspect.isfunction(inner) or inspect.ismethod(inner) or inspect.isbuiltin(inner)):
        return
    name = describe(inner)
    where = repr(target) if isinstance(target, str) else "target"
    if inspect.isasyncgenfunction(inner):
        raise TypeError(
            f"{api}() expected an async function, but {name} is an async generator "
            f"function: iterate it instead.\n"
            + Fix(
                f"await {api}({where}, {name})",
                f"async for item in adapters.iterate({where}, {name}()): ...",
            ).render()
        )
    if not inspect.iscoroutinefunction(inner):
        raise TypeError(
            f"{api}() expected an async function, but {name} is a sync function; "
            f"a sync function does not need a loop, only a thread.\n"
            + Fix(
                f"await {api}({where}, {name}, *args)",
                f"await bridge.spawn_blocking({name}, *args)  # or make {name} async def",
            ).render()
        )


#: ``PetExecutor``, imported on first use: the pet host is a layer above
#: the adapters, which import it lazily (see ``_import_pet_executor_class``).
_pet_executor_class: type[PetExecutor] | None = None


def _import_pet_executor_class() -> type[PetExecutor]:
    global _pet_executor_class
    from pet_executor._host import PetExecutor

    _pet_executor_class = PetExecutor
    return PetExecutor


class _Route:
    """Where work for ``target`` goes, seen from the host task ``here``:
    ``local`` (a plain await on this very run), or a pet, or a token."""

    __slots__ = ("local", "pet", "token")

    def __init__(self, target: object, here: Context) -> None:
        pet_executor_class = _pet_executor_class or _import_pet_executor_class()
        self.pet: PetExecutor | None = None
        self.token: Token | None = None
        self.local = False
        if isinstance(target, pet_executor_class):  # first: the common target
            self.pet = target
            run = target._run
            # A pet's run is local only on the pet's own thread: the token
            # comparison is made there alone.
            self.local = (
                run is not None
                and run.thread_ident == _get_ident()
                and run.open
                and run.token == here.token
            )
        elif isinstance(target, str):
            get(target)  # unknown (LookupError) or unavailable here: a clear error
            if target == here.runtime:
                self.local = True
                return
            from bridge._pets import pet

            self.pet = pet(target)
        elif isinstance(target, Token):
            self.token = target
            self.local = here.token is not None and target == here.token
        else:
            raise TypeError(
                f"adapters.call() target must be a runtime name, a token or a PetExecutor, "
                f"not {type(target).__name__} {target!r}.\n"
                + Fix(
                    "await adapters.call(loop, fn)",
                    'await adapters.call("asyncio", fn)  # or bridge.current_context().token',
                ).render()
            )

    def submit(
        self, work: Callable[[], Awaitable[T]], context: contextvars.Context, label: str
    ) -> WorkFuture[T]:
        if self.pet is not None:
            return self.pet.submit_work(work, context, label)
        assert self.token is not None
        return submit_to(self.token, get(self.token.runtime), work, context, label)


# -- notes ------------------------------------------------------------------------


def _thread_name(ident: int | None) -> str:
    if ident is None:
        return "an unknown thread"
    for thread in threading.enumerate():
        if thread.ident == ident:
            return thread.name
    return f"thread {ident}"


def hop_note(future: WorkFuture[Any], host: RuntimeAdapter, guest_label: str) -> str:
    """The note an exception gains when it crosses from ``future``'s run to
    the host task awaiting it."""
    guest = future.runtime or "another runtime"
    host_task = host.current_task_name()
    awaited = f"{host.name} task {_short(host_task)!r}" if host_task else f"a {host.name} task"
    return (
        f"raised in {guest} task {_short(guest_label)!r} on thread "
        f"{_thread_name(future.thread_ident)}, awaited from {awaited}"
    )


def _short(name: str) -> str:
    # "test_x.<locals>.fails" -> "fails": a task's name as its author wrote it.
    return name.rsplit(".<locals>.", 1)[-1]


def add_hop_note(error: BaseException, note: str) -> None:
    """Add ``note`` to ``error`` unless it has it already (the same object
    crossing the same hop again). Python 3.10 has no ``add_note``: the list
    is set by hand, as 3.11 does."""
    notes = getattr(error, "__notes__", None)
    if notes is None:
        try:
            error.__notes__ = notes = []  # type: ignore[attr-defined,unused-ignore]
        except (AttributeError, TypeError):  # an exception type that refuses attributes
            return
    if isinstance(notes, list) and note not in notes:
        notes.append(note)


def _translate(
    error: BaseException,
    future: WorkFuture[Any],
    host: RuntimeAdapter,
    label: str,
    route: _Route,
) -> BaseException:
    """The exception the host sees for a work future that failed."""
    if future.cancelled():
        return error  # the host's own cancellation: untouched
    if isinstance(error, PetClosedError) and route.pet is not None and route.pet.closed:
        # The guest's pet closed under the call: the run the work ran on ended.
        error = RunFinishedError(
            f"{label}: the {route.pet.runtime} pet {route.pet.name} closed while the call "
            f"was in flight."
        )
    add_hop_note(error, hop_note(future, host, label))
    return error


# -- call ---------------------------------------------------------------------------


async def call(
    target: str | Token | PetExecutor, async_fn: Callable[..., Awaitable[T]], *args: Any
) -> T:
    """Run ``async_fn(*args)`` on ``target`` and await it from this task.

    ``target`` is a runtime name (its shared pet; the caller's own runtime
    means a plain await), a token (that exact run) or a
    :class:`~pet_executor.PetExecutor`. The result, the exception (with a
    note naming the hop) or the cancellation comes back in this task's own
    runtime; cancelling this task cancels the work and waits for its cleanup.
    Work cancelled on the target's side raises
    :class:`~bridge.GuestCancelledError`; a target pet that closes under the
    call raises :class:`~bridge.RunFinishedError`.
    """
    label = describe(async_fn)
    try:
        here = _host_context("adapters.call", label)
        route = _Route(target, here)
        _check_async_fn("adapters.call", target, async_fn)
        work = as_async_callable(async_fn, args, api="adapters.call")
    except BaseException:
        given: object = async_fn
        if inspect.iscoroutine(given):
            given.close()  # refused: it would warn "never awaited"
        raise
    if route.local:
        return await work()
    assert here.runtime is not None
    host = get(here.runtime)
    future: WorkFuture[T] = route.submit(work, contextvars.copy_context(), label)
    try:
        return await await_work(host, future)
    except BaseException as error:
        if not future.done():
            raise  # not the work's outcome (a KeyboardInterrupt, the waiter itself)
        translated = _translate(error, future, host, label, route)
        if translated is error:
            raise
        raise translated from error


# -- iterate, enter -----------------------------------------------------------------


class _TokenHost:
    """What a ``_Session`` needs of a pet, for a run known by its token."""

    def __init__(self, token: Token) -> None:
        self.token = token
        self._adapter = get(token.runtime)
        self.name = f"the {token.runtime} run {token.native!r}"
        self.runtime = token.runtime

    def submit_work(
        self, work: Callable[[], Awaitable[T]], context: contextvars.Context, label: str
    ) -> WorkFuture[T]:
        return submit_to(self.token, self._adapter, work, context, label)

    def _closed_error(self, what: str) -> RunFinishedError:
        return RunFinishedError(f"{self.name}: {what}.")


class _GuestTask:
    """One dedicated task of the guest run, driven step by step from a host
    task. Cancelling the host during a step cancels the guest task and waits
    for its cleanup; a guest-side cancellation of a step reaches the host as
    :class:`~bridge.GuestCancelledError`."""

    def __init__(self, route: _Route, host: RuntimeAdapter, label: str) -> None:
        from pet_executor._host import _Session

        self._route = route
        self._host = host
        self._label = label
        owner: Any = route.pet if route.pet is not None else _TokenHost(route.token)  # type: ignore[arg-type]
        self._guest = get(owner.runtime)
        self._session: _Session = _Session(owner, label)
        self._ended = False

    async def step(self, fn: Callable[[], Awaitable[T]]) -> T:
        session = self._session
        reply: WorkFuture[T] = session._send(fn)
        try:
            return await await_work(self._host, reply)
        except BaseException as error:
            if reply.cancelled():  # the host task was cancelled: so is the guest's
                await self._cancel()
                raise
            task = session._task
            if isinstance(error, type(self._guest.cancel_exception())):
                guest_cancel = GuestCancelledError(
                    f"{self._label}: the dedicated {self._guest.name} task was cancelled "
                    f"on its own side, not by its caller."
                )
                guest_cancel.__cause__ = error
                add_hop_note(guest_cancel, hop_note(task, self._host, self._label))
                raise guest_cancel from error
            if reply.done():
                add_hop_note(error, hop_note(task, self._host, self._label))
            raise

    async def end(self, last: Callable[[], Awaitable[object]] | None) -> None:
        """Run ``last()`` (if any) in the guest task, which then ends."""
        if self._ended:
            return
        self._ended = True
        from pet_executor._host import _END

        try:
            reply = self._session._send((_END, last))
        except BaseException:
            return  # the task is over already
        try:
            await await_work(self._host, reply)
        except BaseException:
            if reply.cancelled():
                await self._cancel()
            raise

    def end_soon(self, last: Callable[[], Awaitable[object]] | None) -> None:
        """``end`` without waiting: for an iterator the host abandoned."""
        if self._ended:
            return
        self._ended = True
        from pet_executor._host import _END

        try:
            self._session._send((_END, last))
        except BaseException:
            return

    async def _cancel(self) -> None:
        # Cancel the whole dedicated task and wait for its cleanup (the guest's
        # cancellation runs the generator's or the context manager's finally).
        self._ended = True
        task = self._session._task
        task.cancel()
        try:
            await self._host.await_future(task)
        except BaseException:  # its outcome, or this task's own cancellation again
            if not task.done():
                raise


class GuestIterator(AsyncIterator[T]):
    """A guest's async iterator, iterated from a host task (see
    :func:`iterate`). ``aclose()`` closes the guest iterator in its task;
    an iterator the host abandons is closed there too, without waiting."""

    def __init__(self, task: _GuestTask, iterator: AsyncIterator[T]) -> None:
        self._task = task
        self._iterator = iterator
        self._done = False

    def __aiter__(self) -> GuestIterator[T]:
        return self

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        try:
            return await self._task.step(self._iterator.__anext__)
        except StopAsyncIteration:
            self._done = True
            await self._task.end(None)
            raise
        except BaseException:
            # The iterator failed (it is finished), or the step was cancelled
            # (the guest task was cancelled with it): end the guest task.
            self._done = True
            if not self._task._ended:
                await self._task.end(None)
            raise

    async def aclose(self) -> None:
        """Close the guest iterator (its ``aclose()``, in its guest task)."""
        self._done = True
        await self._task.end(getattr(self._iterator, "aclose", None))

    async def __aenter__(self) -> GuestIterator[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if not self._task._ended:
            self._task.end_soon(getattr(self._iterator, "aclose", None))


def iterate(
    target: str | Token | PetExecutor, async_iterable: AsyncIterable[T]
) -> GuestIterator[T]:
    """Iterate a guest's ``async_iterable`` from a host task::

        async with adapters.iterate("trio", numbers()) as items:
            async for item in items:
                ...

    Every step runs in one dedicated task of ``target`` (an async generator
    that opens a nursery or a timeout keeps working). Leaving the ``async
    with`` (or ``aclose()``) closes the guest iterator there; cancelling the
    host task cancels the guest task, so the generator is finalised by the
    guest's own rules.
    """
    label = f"iterating {describe(async_iterable)}"
    here = _host_context("adapters.iterate", describe(async_iterable))
    if not isinstance(async_iterable, AsyncIterable):
        raise TypeError(
            f"adapters.iterate() expected an async iterable, got "
            f"{type(async_iterable).__name__}.\n"
            + Fix(
                "adapters.iterate(target, agen_fn)", "adapters.iterate(target, agen_fn())"
            ).render()
        )
    route = _Route(target, here)
    assert here.runtime is not None
    host = get(here.runtime)
    if route.local:
        route = _Route(here.token, _NOWHERE)
    return GuestIterator(_GuestTask(route, host, label), aiter(async_iterable))


class GuestContextManager(AbstractAsyncContextManager[T]):
    """A guest's async context manager, entered from a host task (see :func:`enter`)."""

    def __init__(self, route: _Route, host: RuntimeAdapter, async_cm: Any) -> None:
        self._route = route
        self._host = host
        self._cm = async_cm
        self._task: _GuestTask | None = None

    async def __aenter__(self) -> T:
        if self._task is not None:
            raise RuntimeError(f"{describe(self._cm)} is entered already (not re-entrant)")
        task = self._task = _GuestTask(self._route, self._host, f"entering {describe(self._cm)}")
        try:
            value: T = await task.step(self._cm.__aenter__)
        except BaseException:
            if not task._ended:
                await task.end(None)
            raise
        return value

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        task = self._task
        assert task is not None, "__aexit__ without __aenter__"
        cm = self._cm

        async def exit_() -> bool | None:
            result: bool | None = await cm.__aexit__(exc_type, exc, tb)
            return result

        try:
            suppress = await task.step(exit_)
        finally:
            if not task._ended:
                await task.end(None)
        return bool(suppress)


def enter(
    target: str | Token | PetExecutor, async_cm: AbstractAsyncContextManager[T]
) -> GuestContextManager[T]:
    """Use a guest's async context manager from a host task::

        async with adapters.enter("trio", open_thing()) as thing:
            ...

    ``__aenter__`` and ``__aexit__`` run in one dedicated task of ``target``
    (a context manager that opens a nursery or a timeout keeps working).
    """
    here = _host_context("adapters.enter", describe(async_cm))
    if not hasattr(async_cm, "__aenter__"):
        raise TypeError(
            f"adapters.enter() expected an async context manager, got "
            f"{type(async_cm).__name__}.\n"
            + Fix("adapters.enter(target, cm_fn)", "adapters.enter(target, cm_fn())").render()
        )
    route = _Route(target, here)
    assert here.runtime is not None
    if route.local:
        route = _Route(here.token, _NOWHERE)
    return GuestContextManager(route, get(here.runtime), async_cm)


#: A context that matches no run: a route made from it is never local.
_NOWHERE = Context(runtime=None, role="plain")
