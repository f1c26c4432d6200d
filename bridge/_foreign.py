"""Best-effort recognition of "this code belongs to another runtime".

A coroutine written for one runtime fails under another in recognisable ways:
asyncio's "no running event loop", trio's "must be called from async
context", a foreign trap the scheduler does not understand ("bad yield",
"unrecognized yield message", or curio failing to index it). The first such
error is turned into a ``WrongRuntimeError`` that names both runtimes; the
original stays attached as its cause.
"""

from __future__ import annotations

from ._errors import Fix, WrongRuntimeError

__all__ = ("as_delivered", "foreign_runtime", "wrong_runtime_error")

# (substring of the error message, the runtime it betrays); first match wins.
_SIGNS: tuple[tuple[str, str], ...] = (
    ("no running event loop", "asyncio"),
    ("must be called from async context", "trio"),
    ("trio._core._traps", "trio"),
    ("CancelShieldedCheckpoint", "trio"),
    # trio yields a trap class itself; curio on Python 3.10 cannot index it
    ("'type' object is not subscriptable", "trio"),
    ("WaitTaskRescheduled", "trio"),
    ("PermanentlyDetachCoroutineObject", "trio"),
    ("('trap_", "curio"),
    ("pet_executor", "pet_executor"),
    ("unrecognized yield message None", "asyncio"),
    ("yield message <Future", "asyncio"),
    ("'NoneType' object is not subscriptable", "asyncio"),
    ("'Future' object is not subscriptable", "asyncio"),
    ("got bad yield: None", "asyncio"),
)


def foreign_runtime(error: BaseException, host: str) -> str | None:
    """The runtime ``error`` suggests the code was written for, if it is not
    ``host``; None when the error does not look like a runtime mix-up."""
    if not isinstance(error, (RuntimeError, TypeError)) or isinstance(error, WrongRuntimeError):
        return None
    message = str(error)
    for sign, runtime in _SIGNS:
        if sign in message:
            return runtime if runtime != host else None
    return None


def wrong_runtime_error(
    error: BaseException, host: str, foreign: str, what: str
) -> WrongRuntimeError:
    wrong = WrongRuntimeError(
        f"{what} looks like {foreign} code, but it ran under {host}: "
        f"{type(error).__name__}: {error}",
        fixes=(
            Fix(f"bridge.block_on({what})", f'bridge.block_on({what}, runtime="{foreign}")'),
            Fix(f"await {what}()  # in a {host} task", f'await adapters.call("{foreign}", {what})'),
        ),
    )
    wrong.__cause__ = error
    wrong.with_traceback(error.__traceback__)
    return wrong


def as_delivered(error: BaseException, runtime: str, what: str) -> BaseException:
    """``error`` as the caller should see it: a runtime mix-up becomes a
    ``WrongRuntimeError``; anything else is left as it is."""
    foreign = foreign_runtime(error, runtime)
    return error if foreign is None else wrong_runtime_error(error, runtime, foreign, what)
