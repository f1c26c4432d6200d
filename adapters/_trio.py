"""trio behind the adapter interface."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from importlib.metadata import version as _dist_version
from typing import Any, TypeVar

import trio
from trio._core._entry_queue import EntryQueue
from trio._core._run_context import GLOBAL_RUN_CONTEXT
from trio._threads import PARENT_TASK_DATA

from bridge._context import HOSTED_LOOPS, Context, Token, worker_context
from bridge._errors import RunFinishedError
from bridge._registry import RuntimeAdapter

T = TypeVar("T")

# run_sync_soon callbacks run inside this system task: they are callbacks of
# the loop, not code of a task that may await.
_ENTRY_TASK_CODE = EntryQueue.task.__code__
_RUN_STATE = GLOBAL_RUN_CONTEXT


class TrioToken(Token):
    __slots__ = ("_token",)
    runtime = "trio"

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._token = token

    @property
    def native(self) -> trio.lowlevel.TrioToken:
        return self._token

    def run_sync_soon_threadsafe(self, fn: Callable[..., object], *args: Any) -> None:
        try:
            self._token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            raise RunFinishedError("the trio run this token belongs to has finished.") from None


class _RunCache(threading.local):
    runner: object = None
    in_task: Context | None = None
    in_callback: Context | None = None


class TrioAdapter(RuntimeAdapter):
    name = "trio"
    module = "trio"

    def __init__(self) -> None:
        self._cache = _RunCache()

    def version(self) -> str:
        return _dist_version("trio")

    def detect_loop(self) -> Context | None:
        # A threading.local's __dict__ is this thread's: reading it costs no
        # AttributeError when the attribute is unset (most threads).
        run = _RUN_STATE.__dict__
        runner = run.get("runner")
        if runner is None:
            return None
        task = run.get("task")
        if task is None and runner.is_guest:
            return None  # the host loop's own code, between two guest ticks
        cache = self._cache
        if cache.runner is not runner:
            token = TrioToken(trio.lowlevel.current_trio_token())
            common: dict[str, Any] = {
                "runtime": "trio",
                "role": "event_loop",
                "hosted": token.native in HOSTED_LOOPS,
                "token": token,
                "can_block": False,
            }
            cache.in_task = Context(in_task=True, **common)
            cache.in_callback = Context(in_task=False, **common)
            cache.runner = runner
        if task is None or getattr(task.coro, "cr_code", None) is _ENTRY_TASK_CODE:
            return cache.in_callback
        return cache.in_task

    def detect_worker(self) -> Context | None:
        token = PARENT_TASK_DATA.__dict__.get("token")
        if token is None:
            return None
        return worker_context("trio", TrioToken(token))

    def run(self, async_fn: Callable[..., Awaitable[T]], *args: Any, **options: Any) -> T:
        result: T = trio.run(async_fn, *args, **options)
        return result

    def token_for(self, native: Any) -> Token:
        return TrioToken(native)


Adapter = TrioAdapter
