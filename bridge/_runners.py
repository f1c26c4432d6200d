"""Runners cached per thread and per runtime, for block_on from plain threads.

Like ``asyncio.Runner``: one loop (or kernel) per thread and runtime, reused
by every call on that thread, so no loop is made per call and tasks left
pending stay pending until the next call. They are closed by
``close_thread_runners()``, when their thread ends, and at exit (main thread).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading

from ._registry import Runner, get

__all__ = ("close_thread_runners", "discard_thread_runner", "thread_runner")

_log = logging.getLogger("runtime_bridge")


class _Runners:
    """This thread's runners; closing them when the thread ends (the
    thread-local that holds this object is dropped then)."""

    def __init__(self) -> None:
        self.by_runtime: dict[str, Runner | None] = {}

    def close(self) -> None:
        runners, self.by_runtime = self.by_runtime, {}
        for name, runner in runners.items():
            if runner is None:
                continue
            try:
                runner.close()
            except Exception:
                _log.exception("closing the %s runner of a thread failed", name)

    def __del__(self) -> None:
        self.close()


class _ThreadRunners(threading.local):
    runners: _Runners | None = None


_here = _ThreadRunners()


def thread_runner(runtime: str) -> Runner | None:
    """This thread's runner for ``runtime`` (made on first use), or None for a
    runtime that cannot resume a run on a thread (trio)."""
    runners = _here.runners
    if runners is None:
        runners = _here.runners = _Runners()
    try:
        return runners.by_runtime[runtime]
    except KeyError:
        runner = runners.by_runtime[runtime] = get(runtime).new_runner()
        return runner


def discard_thread_runner(runtime: str) -> None:
    """Drop this thread's runner of ``runtime`` (after a KeyboardInterrupt went
    through it), closing it as far as it still can be."""
    runners = _here.runners
    runner = runners.by_runtime.pop(runtime, None) if runners is not None else None
    if runner is not None:
        with contextlib.suppress(Exception):
            runner.close()


def close_thread_runners() -> None:
    """Close the runners cached for this thread: remaining tasks are
    cancelled and their cleanup runs. The next block_on makes new ones."""
    runners = _here.runners
    if runners is not None:
        runners.close()


atexit.register(close_thread_runners)
