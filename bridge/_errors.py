"""The error family.

Every error the library raises on purpose is a :class:`BridgeError` with a
stable code. Its message has four parts: what happened (specific to this
raise), why it is a problem, the fix as a before/after line of code, and a
pointer to ``runtime-bridge explain CODE`` for the long form. The long forms
live next to the classes, in :data:`EXPLANATIONS`, so the CLI and the docs
read one source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = (
    "EXPLANATIONS",
    "BlockingInLoopError",
    "BridgeError",
    "ContextPanic",
    "DeadlockError",
    "Fix",
    "GuestCancelledError",
    "NestedRuntimeError",
    "NoRuntimeError",
    "PetClosedError",
    "RunFinishedError",
    "RuntimeUnavailableError",
    "WrongRuntimeError",
)


@dataclass(frozen=True)
class Fix:
    """A suggested change: the line as written, and the line to write instead."""

    before: str
    after: str
    note: str = ""

    def render(self) -> str:
        lines = [f"    before: {self.before}", f"    after:  {self.after}"]
        if self.note:
            lines.append(f"    ({self.note})")
        return "\n".join(lines)


def _rebuild(cls: type[BridgeError], message: str, state: dict[str, Any]) -> BridgeError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class BridgeError(Exception):
    """Root of every error this library raises on purpose."""

    code: ClassVar[str] = "BRG000"
    #: Why the situation is a problem, in one or two sentences.
    why: ClassVar[str] = "The library could not complete the call."
    #: The usual fixes; an instance may pass more specific ones.
    fixes: ClassVar[tuple[Fix, ...]] = ()

    def __init__(self, what: str, *, fixes: tuple[Fix, ...] | None = None) -> None:
        self.what = what
        self.fixes_used = self.fixes if fixes is None else fixes
        super().__init__(self._compose())

    def _compose(self) -> str:
        parts = [self.what, f"Why it matters: {self.why}"]
        if self.fixes_used:
            heading = "Fix:" if len(self.fixes_used) == 1 else "Fixes (any one):"
            parts.append(heading + "\n" + "\n".join(f.render() for f in self.fixes_used))
        parts.append(f"More: runtime-bridge explain {self.code}")
        return "\n".join(parts)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))


class ContextPanic(BridgeError, RuntimeError):
    """A call was made from a place where it cannot work (the wrong thread,
    runtime or nesting). Fixing it means changing the calling code."""

    code = "BRG010"
    why = "The call cannot work from where it was made."


class BlockingInLoopError(ContextPanic):
    code = "BRG001"
    why = (
        "A blocking call on an event-loop thread stops that loop: no other task "
        "runs, and if the work needs this loop it can never finish."
    )
    fixes = (
        Fix(
            "result = bridge.block_on(fetch())",
            "result = await fetch()",
            "when the caller can be async",
        ),
        Fix(
            "await something_that_blocks_on()",
            "await bridge.spawn_blocking(something_that_blocks_on)",
            "move the sync caller off the loop",
        ),
        Fix(
            "asyncio.run(main())",
            "bridge.run(main)  # or: await bridge.ensure_portal() in the task",
            "give the task a portal, so sync code may re-enter the loop",
        ),
    )


class NestedRuntimeError(ContextPanic):
    code = "BRG002"
    why = (
        "This thread is already driving a runtime's scheduler; starting another "
        "one inside it freezes the outer one until the inner one returns."
    )
    fixes = (
        Fix("asyncio.run(work())  # inside a running loop", "await work()"),
        Fix("trio.run(work)  # inside asyncio", 'await adapters.call("trio", work)'),
    )


class WrongRuntimeError(ContextPanic):
    code = "BRG003"
    why = (
        "Each runtime's primitives only work under that runtime's scheduler; under "
        "another one they fail with an obscure error or hang."
    )
    fixes = (
        Fix(
            "await trio_only_fn()  # in an asyncio task",
            'await adapters.call("trio", trio_only_fn)',
        ),
        Fix(
            "bridge.block_on(trio_only_fn)",
            'bridge.block_on(trio_only_fn, runtime="trio")',
        ),
    )


class DeadlockError(ContextPanic):
    code = "BRG004"
    why = (
        "The wait can never finish: what it waits for is itself waiting, "
        "directly or through others, on this wait."
    )
    fixes = (
        Fix(
            "pet.submit(work).result()  # on the pet's own thread",
            "await work()  # or call it from another thread",
        ),
    )


class NoRuntimeError(ContextPanic):
    code = "BRG005"
    why = "The call needs a running event loop or task on this thread, and there is none."
    fixes = (
        Fix("await bridge.spawn_blocking(f)  # in plain sync code", "f()"),
        Fix("coro()  # from sync code", "bridge.block_on(coro())"),
    )


class RuntimeUnavailableError(BridgeError, LookupError):
    code = "BRG101"
    why = "The runtime is not installed, or cannot work on this Python."
    fixes = (Fix("pip install runtime-bridge", "pip install 'runtime-bridge[all]'"),)

    def __str__(self) -> str:
        # LookupError would repr() a single argument; keep the message readable.
        return str(self.args[0]) if self.args else ""


class PetClosedError(BridgeError):
    code = "BRG102"
    why = "A closed pet executor runs nothing more; the call never started."
    fixes = (
        Fix("pet.close(); pet.call(work)", "with PetExecutor() as pet: pet.call(work)"),
        Fix(
            "old_pet.call(work)", "bridge.pet().call(work)  # the shared pet, re-created on demand"
        ),
    )


class RunFinishedError(BridgeError):
    code = "BRG103"
    why = (
        "The run this token or future belongs to is not running (it ended, or its "
        "runner is paused between two calls); work queued there would never run."
    )
    fixes = (
        Fix(
            "token.run_sync_soon_threadsafe(cb)  # after the run",
            "keep the run going, or target a pet",
        ),
    )


class GuestCancelledError(BridgeError):
    code = "BRG104"
    why = (
        "The work was cancelled on the runtime that ran it, not by the caller; "
        "reporting it as the caller's own cancellation would silently cancel "
        "the caller's siblings or drop a result."
    )
    fixes = (
        Fix(
            'await adapters.call("trio", work)  # the guest cancels itself',
            "handle GuestCancelledError, or find why the guest cancelled the work",
        ),
    )


_ALL: tuple[type[BridgeError], ...] = (
    BridgeError,
    ContextPanic,
    BlockingInLoopError,
    NestedRuntimeError,
    WrongRuntimeError,
    DeadlockError,
    NoRuntimeError,
    RuntimeUnavailableError,
    PetClosedError,
    RunFinishedError,
    GuestCancelledError,
)

_LONG: dict[str, str] = {
    "BRG000": (
        "The root of the family; catch it to catch every error the library raises on purpose."
    ),
    "BRG010": (
        "The family of 'called from the wrong place' errors. Each member has its own "
        "code; all are RuntimeErrors too, so existing `except RuntimeError` code keeps "
        "catching them."
    ),
    "BRG001": (
        "A blocking entry point (block_on, PetExecutor.call/iterate/enter, the "
        "blocking face of a dual API) was called on a thread that is running an event "
        "loop, in a task without a greenlet portal. Blocking there would stop every "
        "other task of that loop, and if the work needs the same loop, the call would "
        "never return. Make the caller async, move the sync caller to a worker with "
        "spawn_blocking, give the task a portal (bridge.run or ensure_portal), or opt "
        "the process into bridge.configure(policy='offload') to run the work on a pet "
        "under deadlock detection."
    ),
    "BRG002": (
        "A runtime's entry point (asyncio.run, trio.run, curio.run, "
        "pet_executor.run, a blocking runner) was called on a thread that already "
        "runs a scheduler. The outer loop stops while the inner one runs, and "
        "anything the inner work needs from the outer loop deadlocks. Await the work "
        "directly, or run it on another runtime with adapters.call."
    ),
    "BRG003": (
        "A primitive of one runtime was used under another (a trio function in an "
        "asyncio task, an asyncio future in trio, a curio trap elsewhere). Detection "
        "is best effort, from the first foreign trap or error seen. Route the work to "
        "its runtime with adapters.call(runtime, fn) or block_on(fn, runtime=...)."
    ),
    "BRG004": (
        "A wait made through the library would close a cycle in the wait-for graph "
        "(work items, the threads blocked in them, capacity limiters). The message "
        "names the cycle. Break it by awaiting instead of blocking, by running the "
        "waited-on work elsewhere, or by raising a limiter's capacity."
    ),
    "BRG005": (
        "An operation that needs a running loop or task was called where none runs "
        "(plain sync code). From sync code use block_on; inside sync code there is "
        "nothing to offload."
    ),
    "BRG101": (
        "The runtime's package is not installed, or cannot run on this Python (curio "
        "1.6, its last release, imports on Python 3.10 and 3.11 only). Install the "
        "extra that the message names; `runtime-bridge doctor` lists what is usable."
    ),
    "BRG102": (
        "The pet executor was closed (by close(), its context manager, interpreter "
        "exit, or a fork) before the call was made or while it was pending; pending "
        "calls at close are cancelled and get this error or their cancellation. Use "
        "a live pet; bridge.pet() re-creates the shared one on demand."
    ),
    "BRG103": (
        "A token or future refers to a run that is over, or to a cached runner that "
        "is paused between two block_on calls. The work was refused rather than "
        "queued forever. Target a run that is live, or a pet."
    ),
    "BRG104": (
        "Work awaited across runtimes was cancelled by the runtime that ran it (its "
        "own timeout or cancel scope, or a task cancel on that side). The caller gets "
        "this error instead of its own cancellation exception, so a trio nursery or "
        "an asyncio TaskGroup on the caller's side does not mistake it for its own."
    ),
}

#: code -> (class name, long explanation)
EXPLANATIONS: dict[str, tuple[str, str]] = {
    cls.code: (cls.__name__, _LONG[cls.code]) for cls in _ALL
}


def explain(code: str) -> str:
    """Return the long form of an error code, or raise ``KeyError``."""
    name, text = EXPLANATIONS[code.upper()]
    cls = next(c for c in _ALL if c.code == code.upper())
    lines = [f"{code.upper()}: {name}", "", text, "", f"Why it matters: {cls.why}"]
    if cls.fixes:
        lines += ["", "Typical fixes:"] + [f.render() for f in cls.fixes]
    return "\n".join(lines)
