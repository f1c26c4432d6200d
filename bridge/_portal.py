"""Greenlet portals: sync code inside a task awaits on the task's own loop.

Theory of operation. A task with a portal does not step its coroutine
directly. Its top-level coroutine is a *shim* (``_portal_task``) that awaits a
*driver* generator (``_drive``), and the driver runs every step of the real
coroutine inside a *worker*, a greenlet (``_PortalGreenlet``) it takes from
its thread's pool of idle workers for that step:

    event loop --send/throw--> shim --> driver --switch--> worker (``_work``)
                                                             coro.send(...)
    event loop <--yield------- shim <-- driver <--switch---  (coro yielded)

So every frame the task runs, sync frames called from it included, runs in a
worker. ``portal_await(aw)`` called from such a frame steps ``aw`` right
there, with ``send(None)``; an awaitable that finishes without suspending
costs no switch at all (the fast path). When ``aw`` yields (a future, a trio
trap, a curio trap), ``portal_await`` *parks* the worker: it switches to the
driver handing over what was yielded; the driver yields it to the event loop
exactly as an ``await`` would have, then switches back into the same worker
with the loop's answer (a value, or an exception as ``_Thrown``), and
``portal_await`` feeds it into ``aw``. Nesting (sync -> async -> sync -> ...)
is just a deeper stack in the same worker, and cancellation is the loop's
answer like any other: thrown into ``aw``, it unwinds through the sync frames
and out of the task's coroutine.

A step that ends without parking (the coroutine yielded, returned or raised)
leaves its worker at the top of its loop, free, and the driver puts it back
in the pool. So a task holds a greenlet only while sync code of it is
suspended in ``portal_await``: a task that never is costs a switch into a
pooled worker and back per step, not a greenlet of its own (making and
starting one costs several times more), and suspended in a plain ``await``
it refers to no greenlet at all. Unless something else refers to the worker
when its step ends: a greenlet the step started, whose parent it is, say
(SQLAlchemy's ``greenlet_spawn`` keeps one across awaits and switches back
to its parent). Then the task keeps the worker, and its next steps run in
it; at the task's end, a worker still referred to is unwound, not pooled.

Invariants the code relies on:

- A worker runs only between a driver's switch into it and its switch back,
  i.e. only during one step of a task with a portal; so "the current
  greenlet is a worker" means "this task has a portal", with no lookup of
  the current task (``has_portal`` is one ``getcurrent()``).
- The driver sets the worker's parent to the greenlet stepping the task
  before every switch: a 3.12 eager task takes its first step inside
  ``create_task``, possibly inside another task's worker, and later steps
  from the loop. Switching "up" is always ``parent.switch``.
- A worker's contextvars context is the task's (greenlets have a context
  each): the driver gives the worker the stepping context with each step
  and takes it back when the worker goes back to the pool, so no task's
  context reaches another task or stays alive in an idle worker. A parked
  worker's is replaced only when the stepping context changed, and not if
  code in the step entered a context of its own (``Context.run``) and is
  suspended inside it.
- An idle worker keeps nothing of the step it ran: what the step ended with
  reaches the driver in the worker's ``out`` slot, which the driver empties,
  not as an argument of the parking switch (that would stay alive as long
  as the worker idles), and ``_work`` clears its locals before parking.
- Nothing in a worker's frames refers to the worker itself, so a parked
  worker whose driver is gone is freed, and greenlet unwinds it
  (GreenletExit through the task's sync frames), on its own thread.
- "Something else refers to the worker" is its reference count above the
  driver's own reference. Parked, a greenlet's frame refers to the greenlet
  it switched to: a worker that parked inside a step of another worker's
  task (a 3.12 eager task's first step, a ``with_portal`` coroutine awaited
  inline) refers to that worker until it runs again; ``up`` and ``lent``
  count those references, so they do not make the other worker look kept.
- A greenlet keeps the recursion depth of the stack it was started on: the
  pool keeps only workers started near the bottom of one (``_new_worker``),
  and at most ``_POOL_LIMIT`` idle ones per thread.
- Another greenlet library may start greenlets from inside a step (SQLAlchemy's
  ``greenlet_spawn``). A ``portal_await`` from such a greenlet finds the worker
  among its parents, checks the worker is inside a step (parked at a switch
  that is not ours), and hands the driver a ``_Detour`` so the loop's answer
  goes back to that greenlet.
- Greenlets run only on their own thread. A finaliser on another thread may
  close a portal coroutine: the close succeeds at once, and the coroutine's
  cleanup runs on its own thread later: a parked worker is unwound there
  once freed; a coroutine with no worker goes to that thread's pool
  (``doomed``), together with one of its idle workers let go, whose
  unwinding there closes it (``_close_on_its_thread``).

How tasks get one: ``with_portal(coro)`` wraps a coroutine (awaited inline, or
as a new task's coroutine); the asyncio task factory, the trio instrument and
the curio task class wrap each new task's coroutine; ``ensure_portal()`` swaps
the coroutine of the running task (asyncio, trio).

The driver is primed (started up to its first ``yield``) when the shim is
made, while the shim itself stays unstarted, so runtimes and libraries that
look at the coroutine's state (anyio) see a task that has not started; and a
shim that is dropped or cancelled before its first step closes the wrapped
coroutine through the driver's finaliser, as the bare coroutine would have
been, without a "never awaited" warning.

Limits. A parked worker is invisible to the cycle collector: a portal task
abandoned while suspended in ``portal_await`` (never finished nor cancelled,
e.g. its loop closed with it pending) whose own frames refer back to its task
leaks, as with greenback. (Abandoned in a plain ``await``, it is collected,
but if its shim and coroutine are finalised in the wrong order, the
coroutine's cleanup runs outside any portal.) Task stack introspection
(asyncio's ``Task.get_stack``, trio's ``iter_await_frames``) stops at the
shim; curio's ``where()`` is unaffected. A runtime started inside a portal
task's step (a nested run, itself an error the bridge reports) would see that
task's portal as its own.

This module imports greenlet; importing ``bridge`` must not, so nothing imports
this module at ``import bridge`` time. The adapters find it in ``sys.modules``
when they need to know whether a portal is active (none can be before this
module is imported).
"""

from __future__ import annotations

import collections
import contextvars
import functools
import inspect
import sys
import threading
import types
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, TypeVar, cast

from greenlet import GreenletExit as _GreenletExit  # type: ignore[import-untyped]
from greenlet import getcurrent
from greenlet import greenlet as _greenlet

from ._context import current_context
from ._errors import ContextPanic, Fix
from ._work import InContext

if TYPE_CHECKING:
    import asyncio

    import trio

__all__ = (
    "TaskFactory",
    "asyncio_portal_task_factory",
    "curio_portal_task_class",
    "ensure_portal",
    "has_portal",
    "install_asyncio_portals",
    "portal_await",
    "trio_portal_instrument",
    "with_portal",
)

T = TypeVar("T")

#: An asyncio task factory, as ``loop.set_task_factory`` takes it.
TaskFactory = Callable[..., "asyncio.Future[Any]"]

_CoroutineType = types.CoroutineType


class _Thrown:
    """The loop's answer was an exception (``throw``), not a value (``send``)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Detour:
    """Yielded by a greenlet started inside a step (not the worker itself):
    the driver must send the loop's answer back to ``greenlet``."""

    __slots__ = ("greenlet", "value")

    def __init__(self, greenlet: Any, value: object) -> None:
        self.greenlet = greenlet
        self.value = value


#: What the driver yields while it is being primed; never reaches a loop.
_READY = object()

# What a worker switches to its parent with; what goes with it is in ``out``.
#: The coroutine yielded ``out``: the step is over, the worker is free.
_STEPPED = object()
#: The coroutine returned ``out``: the worker is free.
_RETURNED = object()
#: The coroutine raised ``out``: the worker is free.
_RAISED = object()
#: ``portal_await`` suspends the step on ``out``: the task keeps the worker.
_PARKED = object()

#: Idle workers kept per thread; more are let go (greenlet unwinds them).
_POOL_LIMIT = 64


class _PortalGreenlet(_greenlet):  # type: ignore[misc]
    """A worker: the greenlet in which steps of portal tasks run (its type is
    how ``has_portal`` recognises it)."""

    __slots__ = ("depth", "lent", "out", "up")

    out: Any  # what the step ended with, for the driver
    depth: int  # the recursion depth it started at (approximately)
    # Parked, a greenlet refers to the one it switched to (in its frame's
    # stack): ``up`` is that one, if a worker, whose ``lent`` counts them.
    up: _PortalGreenlet | None
    lent: int


class _Pool(collections.deque[_PortalGreenlet]):
    """One thread's idle workers, and the coroutines that other threads left
    it to close (``doomed``). (A deque: a list that goes from one item to
    none and back at every step would reallocate its array every time.)"""

    __slots__ = ("doomed",)

    def __init__(self) -> None:
        super().__init__()
        self.doomed: list[Coroutine[Any, Any, Any]] = []


class _ThreadPools(threading.local):
    pool: _Pool


_threads = _ThreadPools()
_NO_POOL = _Pool()  # a driver's pool before its first step


def _work(coro: Any, message: object) -> None:
    """The run of a worker: one step of a task's coroutine per turn of the
    loop, then it parks, free, until a driver hands it the next one. What
    the step ended with goes to the driver in ``out``, not as an argument of
    the parking switch, which would keep it alive as long as the worker
    idles; for the same reason the locals are cleared before parking.

    Nothing here refers to the greenlet itself (hence ``getcurrent()``): a
    worker whose owner is gone is freed, and greenlet unwinds it with
    GreenletExit, on its own thread.
    """
    while True:
        try:
            if type(message) is _Thrown:
                error = message.error
                message = None
                try:
                    if type(error) is GeneratorExit:
                        # The shim is closed. So is the coroutine, already,
                        # when both were in a cycle the collector finalised.
                        coro.close()
                        raise error
                    yielded = coro.throw(error)
                finally:
                    del error  # no cycle between this frame and a propagating error
            else:
                yielded = coro.send(message)
        except StopIteration as stop:
            getcurrent().out = stop.value
            outcome = _RETURNED
        except _GreenletExit:
            raise  # unwound: the task that owned this worker is gone
        except BaseException as exc:
            getcurrent().out = exc
            outcome = _RAISED
        else:
            getcurrent().out = yielded
            outcome = _STEPPED
        coro = message = yielded = None
        try:
            coro, message = getcurrent().parent.switch(outcome)
        except _GreenletExit:
            # Let go while idle; close what other threads left to this one.
            _close_doomed()
            raise


def _new_worker(here: Any) -> tuple[_PortalGreenlet, bool]:
    """A new worker, and whether the pool may keep it.

    A greenlet keeps the recursion depth of the stack it was started on, so
    a worker made deep in a stack would leave every later step it runs less
    room: only workers made near the bottom of a stack are kept.
    """
    worker = _PortalGreenlet(_work)
    worker.up = None
    worker.lent = 0
    # Python's recursion depth here, give or take the C calls it counts too:
    # the frames down to the bottom of this greenlet's stack, plus the depth
    # the greenlet started at, if a worker (the thread's main greenlet starts
    # at 0; another library's greenlet, at a depth unknown, taken as 0).
    depth = here.depth if type(here) is _PortalGreenlet else 0
    shallow = sys.getrecursionlimit() // 4
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None and depth <= shallow:
        depth += 1
        frame = frame.f_back
    worker.depth = depth
    return worker, depth <= shallow


def _close_doomed() -> None:
    pool = getattr(_threads, "pool", None)
    if pool is not None:
        while pool.doomed:
            pool.doomed.pop().close()


def _close_on_its_thread(pool: _Pool, coro: Coroutine[Any, Any, Any]) -> None:
    """Close ``coro``, whose steps ran on the thread of ``pool``, from another
    thread: a worker of that thread is let go, and greenlet unwinds it there,
    the next time that thread runs greenlet code; it closes ``coro`` then."""
    try:
        worker = pool.pop()
    except IndexError:  # that thread is inside steps, or gone: close it here
        coro.close()
        return
    pool.doomed.append(coro)
    _let_go(worker)
    del worker


@types.coroutine
def _drive(coro: Coroutine[Any, Any, T], attach: bool) -> Generator[Any, Any, T]:
    """Step ``coro``, each step in a worker; yield what it yields.

    Primed by whoever makes it: the first ``yield _READY`` returns the first
    message of the shim's runner. ``attach``: the shim replaces the coroutine
    of a running task, whose next message need not be None, so the shim
    itself is primed as well and one more ``_READY`` absorbs that priming.
    """
    message: object
    try:
        message = yield _READY
        if attach:
            message = yield _READY
    except GeneratorExit:
        # Dropped or closed before the first step: close the coroutine as
        # the runtime would have closed it (no "never awaited" warning).
        coro.close()
        raise
    except BaseException as exc:
        message = _Thrown(exc)

    pool = _NO_POOL  # the idle workers of the thread of the last step
    own: Any = None  # the worker the task keeps between two steps, if any
    target: Any = None  # if ``own`` is parked, where the loop's answer goes
    # Assigned before they are read: ``given`` (the context ``own`` was
    # given), ``keep`` (whether the pool may have the worker back).
    while True:
        here = getcurrent()
        context = here.gr_context
        if context is None:
            # The thread has no current context yet (curio's plain Task steps
            # outside any Context.run): make it now, so the worker shares it.
            contextvars.copy_context()
            context = here.gr_context
        if own is None:
            try:
                local_pool = _threads.pool
            except AttributeError:
                local_pool = _threads.pool = _Pool()
            if local_pool is not pool:
                if pool is not _NO_POOL and _is_close(message):
                    # A finaliser on another thread closes the shim: the
                    # coroutine's cleanup runs on its own thread, later. The
                    # close itself succeeds.
                    _close_on_its_thread(pool, coro)
                    raise message.error from None  # type: ignore[attr-defined]
                pool = local_pool
            # (Not ``if pool:``: another thread may pop in between, see
            # _close_on_its_thread.)
            try:
                worker = pool.pop()
            except IndexError:
                worker, keep = _new_worker(here)
            else:
                keep = True
                if worker.up is not None:
                    _resume_up(worker)
                if worker.parent is not here:
                    try:
                        worker.parent = here
                    except ValueError:  # ``here`` was started by this idle worker
                        pool.append(worker)
                        worker, keep = _new_worker(here)
            worker.gr_context = given = context
            outcome = worker.switch(coro, message)
        else:
            worker = own
            if worker.up is not None:
                _resume_up(worker)
            if worker.parent is not here:
                try:
                    worker.parent = here
                except ValueError:  # ``here`` is on another thread
                    if _is_close(message):
                        # As above. A parked worker, once freed, unwinds the
                        # step there; a kept one hands the coroutine over.
                        if target is None:
                            _close_on_its_thread(pool, coro)
                        raise message.error from None  # type: ignore[attr-defined]
                    raise
            if target is None:  # kept, at the top of its loop
                worker.gr_context = given = context
                outcome = worker.switch(coro, message)
            else:
                if context is not given and worker.gr_context is given:
                    # Unless code in the step entered a context of its own
                    # (Context.run) and is suspended inside it.
                    worker.gr_context = given = context
                outcome = target.switch(message)
        if type(here) is _PortalGreenlet:
            # A step taken inside another task's step (a 3.12 eager task's
            # first, or a with_portal coroutine awaited inline): ``worker``
            # must not look like something that refers to ``here`` (see
            # below): no longer its parent, and counted while its stack does.
            worker.parent = _root(here)
            if type(outcome) is not _Detour and not worker.dead:
                worker.up = here
                here.lent += 1
        yielded = worker.out
        worker.out = None
        if outcome is _STEPPED or outcome is _RETURNED or outcome is _RAISED:
            # The step is over; the worker is at the top of its loop.
            if own is None and keep and _getrefcount(worker) <= _LOCAL_REFS:
                # Nothing else refers to it: back to the pool. (Taken from
                # it, or made because it was empty, it leaves it no larger
                # than the number of steps running at once.)
                worker.gr_context = None
                pool.append(worker)
            else:
                kept = own is not None
                own = target = None
                if _free(worker):
                    worker.gr_context = None
                    if keep and (not kept or len(pool) < _POOL_LIMIT):
                        pool.append(worker)
                    else:
                        _let_go(worker)
                elif outcome is _STEPPED:
                    # Something refers to it: a greenlet that the step
                    # started, whose parent it is, say (SQLAlchemy's
                    # greenlet_spawn keeps one across awaits, and switches
                    # back to its parent). It stays the task's, and takes
                    # its next steps too.
                    own = worker
                else:
                    _retire(worker)
            if outcome is not _STEPPED:
                del worker, here
                if outcome is _RETURNED:
                    return yielded  # type: ignore[no-any-return]
                message = None  # no cycle between this frame and the error
                _drop_first_entry(yielded)
                try:
                    raise yielded
                finally:
                    yielded = None
        elif outcome is _PARKED:
            own = target = worker
        elif type(outcome) is _Detour:
            own = worker
            target = outcome.greenlet
            yielded = outcome.value
        else:  # the step raised GreenletExit: the worker is dead
            message = None
            if isinstance(outcome, BaseException):
                raise outcome
            raise RuntimeError(f"a portal worker ended with {outcome!r}")  # pragma: no cover
        del worker, here  # a suspended task refers to no greenlet but ``own``
        try:
            message = yield yielded
        except BaseException as exc:
            # GeneratorExit included: closing the shim throws it into the
            # coroutine, wherever it is suspended, so its cleanup runs; if it
            # yields instead, generator.close() raises RuntimeError as usual.
            message = _Thrown(exc)


def _free(worker: _PortalGreenlet) -> bool:
    """Whether nothing refers to ``worker`` but the driver's local and the
    workers parked inside its steps (which never switch to it)."""
    return _getrefcount(worker) <= _ARGUMENT_REFS + 2 * worker.lent


def _resume_up(worker: _PortalGreenlet) -> None:
    # ``worker`` is about to run, or to be let go: its stack lets go of ``up``.
    up = worker.up
    assert up is not None
    worker.up = None
    up.lent -= 1


def _let_go(worker: _PortalGreenlet) -> None:
    # Dropped, ``worker`` is unwound (once freed): account for it now, as its
    # slots are cleared before greenlet unwinds it.
    if worker.up is not None:
        _resume_up(worker)


def _root(greenlet: Any) -> Any:
    while greenlet.parent is not None:
        greenlet = greenlet.parent
    return greenlet


def _is_close(message: object) -> bool:
    return type(message) is _Thrown and type(message.error) is GeneratorExit


def _retire(worker: _PortalGreenlet) -> None:
    # A worker that something still refers to, whose task is over: it must
    # not run anybody's steps, so it ends now (a greenlet it started, if
    # that ever ends, then returns past it, as to a dead parent).
    _let_go(worker)
    worker.parent = getcurrent()
    worker.throw(_GreenletExit)


_getrefcount = sys.getrefcount


def _refs_of_a_local() -> int:
    local = object()
    return _getrefcount(local)


def _refs_of_an_argument() -> int:
    local = object()
    return _refs_of(local)


def _refs_of(argument: object) -> int:
    return _getrefcount(argument)


#: What ``sys.getrefcount`` says of an object only a local refers to, and
#: of one only a local refers to, passed to a function, inside it.
_LOCAL_REFS = _refs_of_a_local()
_ARGUMENT_REFS = _refs_of_an_argument()


def _drop_first_entry(error: object) -> None:
    # The first entry of the traceback is the worker's own frame, still
    # running (and soon running other tasks' steps): not part of the story.
    tb = getattr(error, "__traceback__", None)
    if tb is not None and tb.tb_frame.f_code is _WORK_CODE:
        error.__traceback__ = tb.tb_next  # type: ignore[attr-defined]


_WORK_CODE = _work.__code__


async def _portal_task(driver: Awaitable[T]) -> T:
    # A real coroutine on top: trio asserts cr_frame, anyio and inspect read
    # the coroutine state, and both introspect cr_frame / cr_await.
    return await driver


_SHIM_CODE = _portal_task.__code__


def _make_shim(coro: Coroutine[Any, Any, T], *, attach: bool = False) -> Coroutine[Any, Any, T]:
    driver: Any = _drive(coro, attach)
    driver.send(None)
    shim: Any = _portal_task(driver)
    # Task reprs and "never awaited" warnings name the wrapped coroutine.
    if type(coro) is _CoroutineType:
        shim.__name__ = coro.__name__
        shim.__qualname__ = coro.__qualname__
    else:
        name = getattr(coro, "__name__", None)
        if name is not None:
            shim.__name__ = name
            shim.__qualname__ = getattr(coro, "__qualname__", name)
    if attach:
        shim.send(None)
    return shim  # type: ignore[no-any-return]


def _is_shim(coro: object) -> bool:
    return getattr(coro, "cr_code", None) is _SHIM_CODE


def with_portal(coro: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
    """Return a coroutine that runs ``coro`` with a portal.

    Awaited (``await with_portal(work())``), sync code that ``work`` calls may
    use :func:`portal_await` until ``work`` returns; given to a runtime as a
    task's coroutine, the whole task has one. Works on every runtime. Each
    suspension of ``coro`` costs two greenlet switches more than without.
    """
    if not isinstance(cast(object, coro), Coroutine):
        raise TypeError(
            f"with_portal() takes a coroutine object; got {coro!r}. "
            "Probably you wrote `with_portal(work)`; you want `with_portal(work())`."
        )
    return _make_shim(coro)


# --- Inside a task: has_portal, portal_await --------------------------------


def has_portal() -> bool:
    """Whether sync code running here may call :func:`portal_await`: the
    current greenlet is the worker running a step of a task with a portal (or
    was started from it, inside a step). Cheap: one ``getcurrent()``."""
    current = getcurrent()
    if type(current) is _PortalGreenlet:
        return True
    return current.parent is not None and _enclosing_portal(current) is not None


def in_worker() -> bool:
    """Whether this code runs in a portal's worker itself (not in a greenlet
    started from one): :func:`portal_run` may be used here."""
    return type(getcurrent()) is _PortalGreenlet


def portal_run(coro: Coroutine[Any, Any, T], context: contextvars.Context) -> T:
    """``portal_await(InContext(coro, context))``, for code that runs in a
    portal's worker (:func:`in_worker`), with the first step taken right
    here: work that does not suspend costs one ``Context.run`` and nothing
    else (the hot path of re-entry through ``block_on``)."""
    try:
        yielded = context.run(coro.send, None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    return portal_await(InContext(coro, context, yielded))


def _enclosing_portal(current: Any) -> Any:
    """The worker that started ``current`` (through any number of
    greenlets), if that worker is inside a step, else None."""
    parent = current.parent
    while parent is not None:
        if type(parent) is _PortalGreenlet:
            # Parked at one of our switches, the worker is idle or its task
            # suspended, and ``current`` runs outside it; parked at another
            # library's switch, the step is in progress and ``current`` is
            # part of it.
            frame = parent.gr_frame
            if frame is not None and frame.f_code not in _PARKING_CODES:
                return parent
            return None
        parent = parent.parent
    return None


def portal_await(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` from sync code, on the running task's own loop.

    The sync frames between the task and this call are suspended while the
    task awaits, exactly as if it had written ``await awaitable``; then this
    returns its result, or raises its exception (cancellation included).
    An awaitable that completes without suspending never leaves this frame.

    Raises :class:`~bridge.ContextPanic` (a ``RuntimeError``) if the current
    task has no portal (see :func:`has_portal`).
    """
    current = getcurrent()
    if type(current) is _PortalGreenlet:
        # A worker: this frame must not refer to its own greenlet (see _work).
        current = portal = None
    else:
        portal = _enclosing_portal(current)
        if portal is None:
            if isinstance(awaitable, Coroutine):
                awaitable.close()  # no "never awaited" warning on top of the error
            raise _no_portal_error()
    if type(awaitable) is _CoroutineType:
        step: Any = awaitable
    else:
        step = _as_coroutine(awaitable)
    try:
        yielded = step.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    while True:
        if portal is None:
            getcurrent().out = yielded
            message = getcurrent().parent.switch(_PARKED)
        else:
            message = portal.parent.switch(_Detour(current, yielded))
        try:
            if type(message) is _Thrown:
                error = message.error
                message = None
                try:
                    yielded = step.throw(error)
                finally:
                    del error  # no cycle between this frame and a propagating error
            else:
                yielded = step.send(message)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


_PARKING_CODES = frozenset({_work.__code__, portal_await.__code__})


def _as_coroutine(awaitable: Awaitable[T]) -> Coroutine[Any, Any, T]:
    if not inspect.isawaitable(cast(object, awaitable)):
        hint = ""
        if inspect.iscoroutinefunction(awaitable):
            hint = " Probably you wrote `portal_await(work)`; you want `portal_await(work())`."
        raise TypeError(f"portal_await() takes an awaitable; got {awaitable!r}.{hint}")
    return _await(awaitable)


async def _await(awaitable: Awaitable[T]) -> T:
    # Futures, tasks, @types.coroutine generators, custom __await__: the
    # interpreter knows every form of the protocol.
    return await awaitable


def _no_portal_error() -> ContextPanic:
    return ContextPanic(
        "portal_await() was called where no greenlet portal is active: the running "
        "task has none, or this is not inside a task of an event loop.",
        fixes=(
            Fix("asyncio.run(main())", "bridge.run(main)  # every task gets a portal"),
            Fix(
                "sync_code_that_awaits()  # in a task",
                "await bridge.ensure_portal(); sync_code_that_awaits()",
                "asyncio and trio",
            ),
        ),
    )


# --- ensure_portal ----------------------------------------------------------


async def ensure_portal() -> None:
    """Give the running task a portal for the rest of its life, if it has none.

    For programs started some other way than ``bridge.run(..., portals=True)``:
    asyncio (and uvloop) and trio. The first call swaps the task's coroutine
    for a portal shim and yields to the loop once (the shim takes over from
    the next step; under asyncio that is a cancellation point, under trio a
    cancel-shielded schedule point); later calls return at once. A task that
    only runs inside :func:`with_portal` gets one too, so it keeps a portal
    after that call returns. Elsewhere (curio, pet_executor, outside a task)
    it returns at once where a portal is active, else raises
    :class:`~bridge.ContextPanic`.
    """
    ctx = current_context()
    if ctx.in_task and ctx.runtime == "asyncio":
        await _attach_asyncio()
    elif ctx.in_task and ctx.runtime == "trio":
        await _attach_trio()
    elif not ctx.portal:
        raise _ensure_portal_error(ctx.runtime)


def _ensure_portal_error(runtime: str | None) -> ContextPanic:
    if runtime is None:
        what = "ensure_portal() was awaited outside any runtime's task on this thread."
    elif runtime == "curio":
        what = (
            "ensure_portal() cannot give a running curio task a portal: curio tasks get "
            "one from their task class, chosen when the kernel is made."
        )
    else:
        what = f"ensure_portal() cannot give a running {runtime} task a portal here."
    return ContextPanic(
        what + " Start the program with bridge.run, which gives every task a portal.",
        fixes=(
            Fix(
                f"{runtime or 'asyncio'}.run(main)",
                f'bridge.run(main, runtime="{runtime or "asyncio"}")',
            ),
            Fix(
                "sync_code_that_awaits()",
                "await bridge.spawn_blocking(sync_code_that_awaits)",
                "its block_on calls then come back to this loop from a worker thread",
            ),
        ),
    )


@types.coroutine
def _yield_to_loop() -> Generator[None, None, None]:
    # A bare yield: asyncio reschedules the task for its next step.
    yield


async def _attach_asyncio() -> None:
    import asyncio

    task = asyncio.current_task()
    if task is None:  # pragma: no cover - current_context() said in_task
        raise _ensure_portal_error(None)
    coro = task.get_coro()
    if _is_shim(coro):
        return
    assert coro is not None
    swap = _asyncio_coro_swapper(task, coro)
    swap(_make_shim(coro, attach=True))  # type: ignore[arg-type]
    await _yield_to_loop()


async def _attach_trio() -> None:
    import trio

    _prepare_trio()
    task = trio.lowlevel.current_task()
    if _is_shim(task.coro):
        return
    task.coro = _make_shim(task.coro, attach=True)  # type: ignore[assignment]
    await trio.lowlevel.cancel_shielded_checkpoint()


# asyncio's C Task exposes ``_coro`` read-only; its step reads the field
# afresh each time, so writing the pointer (with the reference counts) is a
# swap. The field is found once per task type by its value, and checked on
# every use.
_coro_offsets: dict[type, int] = {}


def _asyncio_coro_swapper(task: asyncio.Task[Any], coro: object) -> Callable[[object], None]:
    """A function that makes ``new`` the coroutine ``task`` steps next, in
    place of ``coro``; raises, before anything changed, if it cannot."""
    try:
        task._coro = coro  # type: ignore[attr-defined]
    except AttributeError:
        pass
    else:  # the pure-Python Task: a plain attribute

        def set_attribute(new: object) -> None:
            task._coro = new  # type: ignore[attr-defined]

        return set_attribute

    import ctypes

    offset = _coro_offsets.get(type(task))
    if offset is None:
        words = ctypes.c_size_t * (type(task).__basicsize__ // ctypes.sizeof(ctypes.c_size_t))
        hits = [i for i, word in enumerate(words.from_address(id(task))) if word == id(coro)]
        if len(hits) != 1:
            raise RuntimeError(
                f"ensure_portal() cannot find the coroutine field of {type(task).__qualname__} "
                "on this Python; start the program with bridge.run(main) instead."
            )
        offset = _coro_offsets[type(task)] = hits[0] * ctypes.sizeof(ctypes.c_size_t)
    field = ctypes.c_size_t.from_address(id(task) + offset)
    if field.value != id(coro):  # pragma: no cover - a layout we do not know
        raise RuntimeError(f"the coroutine field of {type(task).__qualname__} moved")
    api = _refcounts()

    def set_field(new: object) -> None:
        api.Py_IncRef(new)
        field.value = id(new)
        api.Py_DecRef(coro)

    return set_field


@functools.cache
def _refcounts() -> Any:
    # Our own handle on the C API, so the argtypes we set cannot clash with
    # anybody else's use of ctypes.pythonapi.
    import ctypes

    api = ctypes.PyDLL("python", handle=ctypes.pythonapi._handle)
    for name in ("Py_IncRef", "Py_DecRef"):
        fn = getattr(api, name)
        fn.argtypes = [ctypes.py_object]
        fn.restype = None
    return api


# --- Portals for a whole run ------------------------------------------------


class _PortalTaskFactory:
    """An asyncio task factory that gives each new task a portal, then makes
    the task with ``inner`` (the user's factory) or as asyncio would."""

    __slots__ = ("_make_task", "inner")

    def __init__(self, inner: TaskFactory | None) -> None:
        self.inner = inner
        if inner is None:
            import asyncio

            self._make_task: Callable[..., asyncio.Future[Any]] = asyncio.Task
        else:
            self._make_task = inner

    def __call__(
        self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
    ) -> asyncio.Future[Any]:
        # Not a coroutine: left alone, so the Task constructor raises its own
        # TypeError. Already a shim: another portal factory's work.
        if type(coro) is _CoroutineType:
            if coro.cr_code is not _SHIM_CODE:
                coro = _make_shim(coro)
        elif isinstance(coro, Coroutine) and not _is_shim(coro):
            coro = _make_shim(coro)
        if self.inner is None:
            return self._make_task(coro, loop=loop, **kwargs)
        return self._make_task(loop, coro, **kwargs)

    def __repr__(self) -> str:
        return f"<portal task factory chained to {self.inner!r}>"


def asyncio_portal_task_factory(inner: TaskFactory | None = None) -> TaskFactory:
    """A task factory that gives every new task a portal, then makes the task
    with ``inner`` (another task factory, e.g. ``asyncio.eager_task_factory``),
    or as the loop does without a factory when ``inner`` is None."""
    return _PortalTaskFactory(inner)


def install_asyncio_portals(loop: asyncio.AbstractEventLoop) -> None:
    """Give every task that ``loop`` creates from now on a portal.

    Installs :func:`asyncio_portal_task_factory` chained to the loop's
    current factory, and keeps it chained: a factory set later with
    ``loop.set_task_factory`` becomes the inner one, and
    ``loop.get_task_factory`` returns the user's factory (so code that saves
    and restores it keeps the portals). Idempotent. Tasks made directly with
    ``asyncio.Task(...)`` bypass factories; they can ``await ensure_portal()``.
    """
    cls = type(loop)
    current = cls.get_task_factory(loop)
    if isinstance(current, _PortalTaskFactory):
        return
    cls.set_task_factory(loop, _PortalTaskFactory(current))
    # The replacements live in the loop's __dict__: a weak reference back, so
    # the loop is freed by reference counting, not left to the cycle collector.
    loop_ref = weakref.ref(loop)

    def this_loop() -> asyncio.AbstractEventLoop:
        alive = loop_ref()
        assert alive is not None  # called through the loop, so it is alive
        return alive

    def set_task_factory(factory: TaskFactory | None) -> None:
        if factory is not None and not callable(factory):
            raise TypeError("task factory must be a callable or None")
        if isinstance(factory, _PortalTaskFactory):
            factory = factory.inner
        cls.set_task_factory(this_loop(), _PortalTaskFactory(factory))

    def get_task_factory() -> TaskFactory | None:
        factory = cls.get_task_factory(this_loop())
        return factory.inner if isinstance(factory, _PortalTaskFactory) else factory

    try:
        loop.set_task_factory = set_task_factory  # type: ignore[method-assign]
        loop.get_task_factory = get_task_factory  # type: ignore[method-assign]
    except AttributeError:  # pragma: no cover - a loop class with __slots__
        pass  # the portals stay on until a factory is set over them


def trio_portal_instrument() -> trio.abc.Instrument:
    """A trio instrument that gives the main task, and every task spawned by a
    task with a portal, a portal: pass it to ``trio.run(..., instruments=[...])``.

    System tasks (``spawn_system_task``, the ``run_sync_soon`` task) get none:
    their callbacks must not be suspended, and they keep trio's KeyboardInterrupt
    protection. Added later with ``trio.lowlevel.add_instrument``, it gives
    portals to the children of tasks that already have one.
    """
    return _trio_instrument_class()()


@functools.cache
def _trio_instrument_class() -> type[trio.abc.Instrument]:
    import trio
    from trio._core._entry_queue import EntryQueue

    _prepare_trio()
    entry_queue_code = EntryQueue.task.__code__

    class PortalInstrument(trio.abc.Instrument):
        def task_spawned(self, task: trio.lowlevel.Task) -> None:
            nursery = task.parent_nursery
            if nursery is None:
                return  # the root task: trio's own
            parent = nursery.parent_task
            if _is_shim(parent.coro):
                pass  # a child of a task with a portal
            elif parent is trio.lowlevel.current_root_task():
                # The root task spawns the main task and then the
                # run_sync_soon task; any other spawn under the root comes
                # from spawn_system_task, called by a running task.
                if trio.lowlevel.current_task() is not parent:
                    return
                if getattr(task.coro, "cr_code", None) is entry_queue_code:
                    return
            else:
                return
            # Before trio binds task.coro.send for the first step.
            task.coro = _make_shim(task.coro)  # type: ignore[assignment]

    PortalInstrument.__qualname__ = PortalInstrument.__name__ = "PortalInstrument"
    return PortalInstrument


@functools.cache
def _prepare_trio() -> None:
    import trio

    # trio decides KeyboardInterrupt protection by walking frames up to the
    # task's coroutine frame, but a worker's frames end at _work: mark it
    # unprotected (as user tasks are) so Ctrl-C still interrupts user code at
    # once, and the driver protected, so it is never torn between two
    # switches. (A trio that wraps functions instead of marking their code
    # leaves portal tasks protected: Ctrl-C then waits for their next
    # checkpoint.)
    trio.lowlevel.disable_ki_protection(_work)
    trio.lowlevel.enable_ki_protection(_drive)


def curio_portal_task_class(base: type | None = None) -> type:
    """A curio task class, a subclass of ``base`` (``curio.Task`` by default;
    e.g. ``curio.task.ContextTask``), whose tasks all have a portal: use it as
    ``curio.Kernel(taskcls=curio_portal_task_class())``."""
    import curio

    return _curio_task_class(curio.Task if base is None else base)


@functools.cache
def _curio_task_class(parent_class: Any) -> type:

    class PortalTask(parent_class):  # type: ignore[misc]
        _run_coro: Any

        def __init__(self, coro: Any, parent: Any = None) -> None:
            super().__init__(coro, parent)
            # The kernel steps _run_coro (curio's wrapper around coro, which
            # also finishes task groups); task.coro stays the user's coroutine
            # for curio's introspection (where(), traceback()).
            self._run_coro = _make_shim(self._run_coro)
            self._send = self._run_coro.send
            self._throw = self._run_coro.throw

    PortalTask.__name__ = PortalTask.__qualname__ = f"Portal{parent_class.__name__}"
    return PortalTask
