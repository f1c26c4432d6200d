"""The reactor: socket readiness through ``selectors``, and a cross-thread wakeup.

One waiter per file descriptor and direction (reading, writing). When the
selector reports readiness the waiter fires (its task is woken and polls
again) and is forgotten.

The interest is kept registered after a waiter fired, so the next wait on
the same socket (the next ``recv`` of a connection) costs no system call;
an interest that fires with nobody waiting is dropped then. That is only
safe where the OS forgets a closed descriptor by itself (epoll, kqueue),
and only for sockets given as objects: the registration remembers its
socket (weakly), so a new socket that reuses the number is registered
afresh. Everywhere else, and for bare descriptors, interest is one-shot.

The kernel blocks in ``select`` only while some descriptor has a waiter; then
another thread wakes it through a socketpair. Otherwise it idles on a thread
primitive (see ``_kernel``), and the socketpair stays silent.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import weakref
from typing import Any, Protocol

__all__ = ("READ", "WRITE", "BusyResourceError", "Reactor")

READ = 0
WRITE = 1
_MASKS = (selectors.EVENT_READ, selectors.EVENT_WRITE)
_DIRECTIONS = ("read", "write")
# Selectors over which a closed descriptor silently leaves the interest set.
_FORGETFUL = tuple(
    getattr(selectors, name)
    for name in ("EpollSelector", "KqueueSelector", "DevpollSelector")
    if hasattr(selectors, name)
)


class BusyResourceError(RuntimeError):
    """Two tasks tried to wait on the same socket in the same direction."""


class IOWaiter(Protocol):
    def _fire(self) -> None: ...


class _Entry:
    """What is known of one descriptor: its waiters, the interest registered
    with the OS, and (lazy mode) the socket it was registered for."""

    __slots__ = ("mask", "owner", "reader", "writer")

    def __init__(self, owner: weakref.ref[Any] | None) -> None:
        self.reader: IOWaiter | None = None
        self.writer: IOWaiter | None = None
        self.mask = 0
        self.owner = owner

    def waiting(self) -> bool:
        return self.reader is not None or self.writer is not None


class Reactor:
    __slots__ = ("_entries", "_lazy", "_selector", "_wake_recv", "_wake_send", "count")

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lazy = isinstance(self._selector, _FORGETFUL)
        self._entries: dict[int, _Entry] = {}
        #: How many descriptors have a waiter (the kernel selects iff > 0).
        self.count = 0
        self._wake_recv, self._wake_send = socket.socketpair()
        self._wake_recv.setblocking(False)
        self._wake_send.setblocking(False)
        self._selector.register(self._wake_recv, selectors.EVENT_READ, None)

    def add(self, fd: int, direction: int, waiter: IOWaiter, owner: object = None) -> None:
        entry = self._entries.get(fd)
        if entry is not None and entry.owner is not None:
            registered = entry.owner()
            if registered is None or (owner is not None and registered is not owner):
                # Left by a socket that was closed: the number now belongs to
                # another one, which the OS does not watch yet.
                self._discard(fd, entry)
                entry = None
        if entry is None:
            ref = weakref.ref(owner) if self._lazy and owner is not None else None
            entry = self._entries[fd] = _Entry(ref)
        current = entry.reader if direction == READ else entry.writer
        if current is not None:
            raise BusyResourceError(
                f"another task is already waiting to {_DIRECTIONS[direction]} file descriptor "
                f"{fd}; only one task at a time may wait on a socket in each direction."
            )
        was_waiting = entry.waiting()
        want = entry.mask | _MASKS[direction]
        if want != entry.mask:
            if entry.mask:
                self._selector.modify(fd, want, entry)
            else:
                self._selector.register(fd, want, entry)
            entry.mask = want
        if direction == READ:
            entry.reader = waiter
        else:
            entry.writer = waiter
        if not was_waiting:
            self.count += 1

    def remove(self, fd: int, direction: int, waiter: IOWaiter) -> None:
        """Forget ``waiter`` (it was cancelled before it fired)."""
        entry = self._entries.get(fd)
        if entry is None:
            return
        if direction == READ and entry.reader is waiter:
            entry.reader = None
        elif direction == WRITE and entry.writer is waiter:
            entry.writer = None
        else:
            return
        if not entry.waiting():
            self.count -= 1
        if entry.owner is None:
            self._narrow(fd, entry)

    def _narrow(self, fd: int, entry: _Entry) -> None:
        """Register only the interest that has a waiter (one-shot mode, or an
        interest that fired with nobody waiting)."""
        want = (selectors.EVENT_READ if entry.reader is not None else 0) | (
            selectors.EVENT_WRITE if entry.writer is not None else 0
        )
        if want == entry.mask:
            return
        if want:
            try:
                self._selector.modify(fd, want, entry)
                entry.mask = want
                return
            except (ValueError, OSError):
                # Closed under a waiter: wake it, so that its retry fails with
                # the socket's own error instead of hanging.
                for waiter in (entry.reader, entry.writer):
                    if waiter is not None:
                        waiter._fire()
                if entry.waiting():
                    self.count -= 1
                entry.reader = entry.writer = None
        self._forget(fd, entry)

    def _discard(self, fd: int, entry: _Entry) -> None:
        # Waiters of a socket that is gone: wake them to fail on their retry.
        waiters = [w for w in (entry.reader, entry.writer) if w is not None]
        if waiters:
            self.count -= 1
        entry.reader = entry.writer = None
        self._forget(fd, entry)
        for waiter in waiters:
            waiter._fire()

    def _forget(self, fd: int, entry: _Entry) -> None:
        if self._entries.get(fd) is entry:
            del self._entries[fd]
        if entry.mask:
            entry.mask = 0
            # Closed meanwhile: the OS dropped the registration already.
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(fd)

    def poll(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (None: forever) for readiness or a
        wakeup; fire the ready waiters. Returns whether anything happened."""
        events = self._selector.select(timeout)
        for key, mask in events:
            entry = key.data
            if entry is None:
                self._drain_wakeups()
                continue
            reader = writer = None
            idle = False
            if mask & selectors.EVENT_READ:
                reader, entry.reader = entry.reader, None
                idle = idle or reader is None
            if mask & selectors.EVENT_WRITE:
                writer, entry.writer = entry.writer, None
                idle = idle or writer is None
            if (reader is not None or writer is not None) and not entry.waiting():
                self.count -= 1
            if entry.owner is None or idle:
                self._narrow(key.fd, entry)
            if reader is not None:
                reader._fire()
            if writer is not None:
                writer._fire()
        return bool(events)

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_recv.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def wakeup(self) -> None:
        """Interrupt a ``poll`` in progress; callable from any thread."""
        try:
            self._wake_send.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # the buffer is full: a wakeup is pending anyway
        except OSError:
            pass  # closed at shutdown: nobody is waiting any more

    def close(self) -> None:
        self._selector.close()
        self._wake_recv.close()
        self._wake_send.close()
        self._entries.clear()
        self.count = 0
