"""Hand-written futures the tests drive, and small helpers."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pet_executor as pe


class Gate(pe.FutureBase[str]):
    """A future the test opens by hand. It counts its polls and drops, keeps
    the waker of its last poll, and can run a hook inside its next poll."""

    def __init__(self) -> None:
        self.is_open = False
        self.waker: pe.Waker | None = None
        self.polls = 0
        self.drops = 0
        self.during_poll: Callable[[pe.Context], None] | None = None

    def poll(self, cx: pe.Context, /) -> pe.Poll[str]:
        self.polls += 1
        hook, self.during_poll = self.during_poll, None
        if hook is not None:
            hook(cx)
        if self.is_open:
            return pe.Poll.ready("opened")
        self.waker = cx.waker
        return pe.Poll.PENDING

    def drop(self) -> None:
        self.drops += 1


def in_thread(fn: Callable[[], object]) -> None:
    """Run ``fn`` on a new thread, to its end."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
