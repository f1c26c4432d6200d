"""Greenlet portals: sync code inside a task awaits on the task's own loop.

Theory of operation. A task with a portal does not step its coroutine
directly. Its top-level coroutine is a *shim* (``_portal_task``) that awaits a
*driver* generator (``_drive``), and the driver runs every step of the real
coroutine inside a greenlet of the task's own, the *portal greenlet*
(``_PortalGreenlet``):

    event loop --send/throw--> shim --> driver --switch--> portal greenlet
                                                             coro.send(...)
    event loop <--yield------- shim <-- driver <--switch---  (coro yielded)

So every frame the task runs, sync frames called from it included, runs in
the portal greenlet. ``portal_await(aw)`` called from such a frame steps
``aw`` right there, with ``send(None)``; an awaitable that finishes without
suspending costs no switch at all (the fast path). When ``aw`` yields (a
future, a trio trap, a curio trap), ``portal_await`` switches to the driver
handing over what was yielded; the driver yields it to the event loop exactly
as an ``await`` would have, then switches back into the greenlet with the
loop's answer (a value, or an exception as ``_Thrown``), and ``portal_await``
feeds it into ``aw``. Nesting (sync -> async -> sync -> ...) is just a deeper
stack in the same greenlet, and cancellation is the loop's answer like any
other: thrown into ``aw``, it unwinds through the sync frames and out of the
task's coroutine.

Invariants the code relies on:

- The portal greenlet runs only between the driver's switch into it and its
  switch back, i.e. only during one step of its own task; so "the current
  greenlet is a portal greenlet" means "this task has a portal", with no
  lookup of the current task (``has_portal`` is one ``getcurrent()``).
- The driver sets the greenlet's parent to the greenlet stepping the task
  before every switch: a 3.12 eager task takes its first step inside
  ``create_task``, possibly inside another task's portal greenlet, and later
  steps from the loop. Switching "up" is always ``portal.parent.switch``.
- The greenlet's contextvars context follows the task's (greenlets have a
  context each): it is set before a switch when the stepping context
  changed, unless code in the greenlet entered a context of its own
  (``Context.run``) and is suspended inside it.
- Another greenlet library may start greenlets from inside a step (SQLAlchemy's
  ``greenlet_spawn``). A ``portal_await`` from such a greenlet finds the portal
  among its parents, checks the portal is inside a step (parked at a switch
  that is not ours), and hands the driver a ``_Detour`` so the loop's answer
  goes back to that greenlet.
- Nothing in the portal greenlet's frames refers to the greenlet itself, so a
  portal whose driver is gone is freed, and greenlet unwinds it.

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

Limits. A suspended greenlet is invisible to the cycle collector: a portal task
abandoned while suspended (never finished nor cancelled, e.g. its loop closed
with it pending) whose own frames refer back to its task leaks, as with
greenback. Task stack introspection (asyncio's ``Task.get_stack``, trio's
``iter_await_frames``) stops at the shim; curio's ``where()`` is unaffected.
A runtime started inside a portal task's step (a nested run, itself an
error the bridge reports) would see that task's portal as its own.

This module imports greenlet; importing ``bridge`` must not, so nothing imports
this module at ``import bridge`` time. The adapters find it in ``sys.modules``
when they need to know whether a portal is active (none can be before this
module is imported).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import types
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, TypeVar, cast

from greenlet import getcurrent  # type: ignore[import-untyped]
from greenlet import greenlet as _greenlet

from ._context import current_context
from ._errors import ContextPanic, Fix

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
    """Yielded by a greenlet started inside a step (not the portal greenlet
    itself): the driver must send the loop's answer back to ``greenlet``."""

    __slots__ = ("greenlet", "value")

    def __init__(self, greenlet: Any, value: object) -> None:
        self.greenlet = greenlet
        self.value = value


#: What the driver yields while it is being primed; never reaches a loop.
_READY = object()


class _PortalGreenlet(_greenlet):  # type: ignore[misc]
    """The greenlet in which one task's coroutine takes all its steps (its
    type is how ``has_portal`` recognises it)."""

    __slots__ = ()


def _take_steps(coro: Coroutine[Any, Any, Any], message: object) -> None:
    """The run of a portal greenlet: started by the driver's first switch, it
    parks here between two steps. The coroutine's return (StopIteration) or
    exception leaves it and reaches the driver, the parent, as the exception
    of its switch().

    Nothing here refers to the greenlet itself (hence ``getcurrent()``, not a
    method's ``self``): a portal whose driver is gone is then freed, and
    greenlet unwinds it with GreenletExit, on its own thread.
    """
    send = coro.send
    throw = coro.throw
    while True:
        if type(message) is _Thrown:
            error = message.error
            message = None
            try:
                yielded = throw(error)
            finally:
                del error  # no cycle between this frame and a propagating error
        else:
            yielded = send(message)
        message = getcurrent().parent.switch(yielded)


@types.coroutine
def _drive(coro: Coroutine[Any, Any, T], attach: bool) -> Generator[Any, Any, T]:
    """Step ``coro`` inside a portal greenlet; yield what it yields.

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

    if getcurrent().gr_context is None:
        # The thread has no current context yet (curio's plain Task steps
        # outside any Context.run): make it now, or the greenlet would make
        # a separate one of its own on first use.
        contextvars.copy_context()
    portal = _PortalGreenlet(functools.partial(_take_steps, coro))
    target = portal
    context_given: object = None
    while True:
        here = getcurrent()
        if portal.parent is not here:
            try:
                portal.parent = here
            except ValueError:  # ``here`` is on another thread
                if type(message) is _Thrown and type(message.error) is GeneratorExit:
                    # A finaliser on another thread closes the shim: the
                    # greenlet can only run on its own thread, where greenlet
                    # kills it once it is freed. The close itself succeeds.
                    raise message.error from None
                raise
        context = here.gr_context
        if context is not context_given and portal.gr_context is context_given:
            portal.gr_context = context_given = context
        try:
            yielded = target.switch(message)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except BaseException:
            message = None  # no cycle between this frame and the error
            raise
        if type(yielded) is _Detour:
            target = yielded.greenlet
            yielded = yielded.value
        else:
            target = portal
        try:
            message = yield yielded
        except BaseException as exc:
            # GeneratorExit included: closing the shim throws it into the
            # coroutine, wherever it is suspended, so its cleanup runs; if it
            # yields instead, generator.close() raises RuntimeError as usual.
            message = _Thrown(exc)


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
    current greenlet is the portal greenlet of the running task (or was started
    from it, inside its current step). Cheap: one ``getcurrent()``."""
    current = getcurrent()
    if type(current) is _PortalGreenlet:
        return True
    return current.parent is not None and _enclosing_portal(current) is not None


def _enclosing_portal(current: Any) -> Any:
    """The portal greenlet that started ``current`` (through any number of
    greenlets), if that portal is inside a step of its task, else None."""
    parent = current.parent
    while parent is not None:
        if type(parent) is _PortalGreenlet:
            # Parked at one of our switches, the portal's task is suspended
            # and ``current`` runs outside it; parked at another library's
            # switch, the step is in progress and ``current`` is part of it.
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
    portal = current if type(current) is _PortalGreenlet else _enclosing_portal(current)
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
        if portal is current:
            message = portal.parent.switch(yielded)
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


_PARKING_CODES = frozenset({_take_steps.__code__, portal_await.__code__})


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

    __slots__ = ("inner",)

    def __init__(self, inner: TaskFactory | None) -> None:
        self.inner = inner

    def __call__(
        self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
    ) -> asyncio.Future[Any]:
        # Not a coroutine: left alone, so the Task constructor raises its own
        # TypeError. Already a shim: another portal factory's work.
        if isinstance(coro, Coroutine) and not _is_shim(coro):
            coro = _make_shim(coro)
        if self.inner is not None:
            return self.inner(loop, coro, **kwargs)
        import asyncio

        return asyncio.Task(coro, loop=loop, **kwargs)

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
    # task's coroutine frame, but a portal greenlet's frames end at
    # _take_steps: mark it unprotected (as user tasks are) so Ctrl-C still
    # interrupts user code at once, and the driver protected, so it is never
    # torn between two switches. (A trio that wraps functions instead of
    # marking their code leaves portal tasks protected: Ctrl-C then waits for
    # their next checkpoint.)
    trio.lowlevel.disable_ki_protection(_take_steps)
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
