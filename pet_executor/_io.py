"""Socket readiness and the socket helpers built on it.

``wait_readable`` / ``wait_writable`` are futures on the kernel's reactor.
The helpers try the non-blocking call first and wait only when it would
block, so a socket with data ready costs no trip through the scheduler.
Every socket they take or return is non-blocking.
"""

from __future__ import annotations

import errno
import socket
from typing import Any, Protocol

from ._future import Context, Poll
from ._kernel import FutureBase, Kernel, _kernel_or_raise
from ._reactor import READ, WRITE, BusyResourceError

__all__ = (
    "BusyResourceError",
    "accept",
    "connect",
    "listen",
    "recv",
    "sendall",
    "wait_readable",
    "wait_writable",
)

_PENDING = Poll.PENDING
_READY = Poll.ready(None)

_NEW = 0
_WAITING = 1
_FIRED = 2
_DONE = 3


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


def _fileno(obj: int | _HasFileno) -> int:
    fd = obj if isinstance(obj, int) else obj.fileno()
    if fd < 0:
        raise OSError(errno.EBADF, f"cannot wait on a closed socket or file ({obj!r})")
    return fd


class _IOWait(FutureBase[None]):
    """Ready once the reactor reports the descriptor ready; inert until polled
    (the kernel is bound at the first poll)."""

    __slots__ = ("_direction", "_fd", "_kernel", "_owner", "_state", "_waker")

    def __init__(self, fd: int, direction: int, owner: object) -> None:
        self._kernel: Kernel | None = None
        self._fd = fd
        self._owner = owner
        self._direction = direction
        self._state = _NEW
        self._waker: Any = None

    def poll(self, cx: Context, /) -> Poll[None]:
        state = self._state
        if state is _FIRED:
            self._state = _DONE
            return _READY
        if state is _NEW:
            kernel = self._kernel = _kernel_or_raise("waiting for socket readiness")
            kernel._reactor_or_new().add(self._fd, self._direction, self, self._owner)
            self._state = _WAITING
        self._waker = cx.waker
        return _PENDING

    def _fire(self) -> None:
        self._state = _FIRED
        self._waker.wake()

    def drop(self) -> None:
        if self._state is _WAITING:
            self._state = _DONE
            reactor = self._kernel._reactor if self._kernel is not None else None
            if reactor is not None:
                reactor.remove(self._fd, self._direction, self)

    def __repr__(self) -> str:
        return f"<wait_{'readable' if self._direction == READ else 'writable'} fd={self._fd}>"


def wait_readable(sock: int | _HasFileno) -> _IOWait:
    """A future that is ready once ``sock`` (a socket, or a file descriptor)
    can be read without blocking. One task at a time may wait to read a given
    socket (another raises :class:`BusyResourceError`)."""
    return _IOWait(_fileno(sock), READ, None if isinstance(sock, int) else sock)


def wait_writable(sock: int | _HasFileno) -> _IOWait:
    """A future that is ready once ``sock`` can be written without blocking."""
    return _IOWait(_fileno(sock), WRITE, None if isinstance(sock, int) else sock)


def _require_nonblocking(sock: socket.socket, what: str) -> None:
    if sock.gettimeout() != 0.0:
        raise ValueError(
            f"pet_executor.{what}() needs a non-blocking socket, got {sock!r}; a blocking call "
            "would stop every task of the run. Call sock.setblocking(False) first (the sockets "
            "that listen(), accept() and connect() return already are)."
        )


async def recv(sock: socket.socket, max_bytes: int) -> bytes:
    """Receive up to ``max_bytes``; ``b""`` means the peer closed its side."""
    _require_nonblocking(sock, "recv")
    while True:
        try:
            return sock.recv(max_bytes)
        except (BlockingIOError, InterruptedError):
            pass
        await wait_readable(sock)


async def sendall(sock: socket.socket, data: bytes | bytearray | memoryview) -> None:
    """Send all of ``data``, waiting for room as needed. If cancelled, an
    unknown prefix of ``data`` may have been sent."""
    _require_nonblocking(sock, "sendall")
    view = memoryview(data).cast("B")
    total = len(view)
    sent = 0
    while sent < total:
        try:
            sent += sock.send(view[sent:])
        except (BlockingIOError, InterruptedError):
            await wait_writable(sock)


async def accept(listener: socket.socket) -> tuple[socket.socket, Any]:
    """Accept a connection: ``(socket, address)``, the socket non-blocking."""
    _require_nonblocking(listener, "accept")
    while True:
        try:
            conn, address = listener.accept()
        except (BlockingIOError, InterruptedError):
            await wait_readable(listener)
            continue
        conn.setblocking(False)
        return conn, address


def listen(address: tuple[str, int] = ("127.0.0.1", 0), *, backlog: int = 128) -> socket.socket:
    """A non-blocking TCP socket listening on ``address`` (port 0: any free
    port; read it back with ``sock.getsockname()``)."""
    sock = socket.create_server(address, backlog=backlog)
    sock.setblocking(False)
    return sock


async def connect(address: tuple[str, int]) -> socket.socket:
    """Open a TCP connection to ``(host, port)``; returns a non-blocking socket.

    A host name is resolved with the system resolver, synchronously (a
    numeric address skips that); each resolved address is tried in turn.
    """
    host, port = address
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    errors: list[OSError] = []
    for family, type_, proto, _, sockaddr in infos:
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            try:
                sock.connect(sockaddr)
            except (BlockingIOError, InterruptedError):
                await wait_writable(sock)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(
                        err, f"connect to {sockaddr!r} failed: {errno.errorcode.get(err, err)}"
                    ) from None
            return sock
        except OSError as exc:
            sock.close()
            errors.append(exc)
        except BaseException:
            sock.close()
            raise
    if len(errors) == 1:
        raise errors[0]
    raise OSError(f"could not connect to {address!r}: {'; '.join(map(str, errors))}")
