"""The reactor: readiness, the socket helpers, and a TCP echo server."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

import pytest

import pet_executor as pe


class _Stats:
    def __init__(self, connections: int) -> None:
        self.accepted = self.bytes = self.closed = 0
        self.expected = connections
        self.all_closed = pe.Event()

    def connection_closed(self) -> None:
        self.closed += 1
        if self.closed == self.expected:
            self.all_closed.set()


async def _serve_echo(listener: socket.socket, stats: _Stats) -> None:
    """Accept forever; echo each connection in a task of its own. A peer that
    breaks off mid-message ends its connection only."""
    handlers: list[pe.JoinHandle[None]] = []

    async def echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := await pe.recv(conn, 65536):
                    stats.bytes += len(data)
                    await pe.sendall(conn, data)
            except OSError:  # reset by the peer
                pass
            stats.connection_closed()

    try:
        while True:
            conn, _ = await pe.accept(listener)
            stats.accepted += 1
            handlers.append(pe.spawn(echo, conn))
    finally:
        for handler in handlers:
            handler.abort()
        with pe.shield():
            for handler in handlers:
                with contextlib.suppress(pe.Cancelled):
                    await handler


def _payload(client: int, message: int) -> bytes:
    size = 1 + (client * 7919 + message * 104729) % 20000  # 1 B to 20 kB, reproducible
    return bytes((client + message + i) % 251 for i in range(size))


async def _client(port: int, client: int, messages: int) -> int:
    sock = await pe.connect(("127.0.0.1", port))
    with sock:
        sent = 0
        for message in range(messages):
            data = _payload(client, message)
            await pe.sendall(sock, data)
            received = bytearray()
            while len(received) < len(data):
                chunk = await pe.recv(sock, 65536)
                assert chunk, "the server closed early"
                received += chunk
            assert received == data
            sent += len(data)
        sock.shutdown(socket.SHUT_WR)
        assert await pe.recv(sock, 1) == b"", "nothing more than what was sent comes back"
    return sent


def test_echo_server_with_100_concurrent_clients_accounts_for_every_byte() -> None:
    stats = _Stats(100)

    async def main() -> tuple[int, ...]:
        listener = pe.listen(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        with listener:
            server = pe.spawn(_serve_echo, listener, stats)
            sent = await pe.join(*[_client(port, c, 5) for c in range(100)])
            # Every connection's handler sees its end before the server stops.
            await stats.all_closed.wait()
            server.abort()
            with pytest.raises(pe.Cancelled):
                await server
        return sent

    sent = pe.run(main)
    expected = sum(len(_payload(c, m)) for c in range(100) for m in range(5))
    assert sum(sent) == expected
    assert (stats.accepted, stats.bytes, stats.closed) == (100, expected, 100)


def test_a_client_breaking_off_mid_message_does_not_break_the_server() -> None:
    stats = _Stats(3)

    async def rude_client(port: int) -> None:
        sock = await pe.connect(("127.0.0.1", port))
        # Half a message, then a reset (SO_LINGER 0) instead of a clean close.
        await pe.sendall(sock, b"x" * 5000)
        await pe.recv(sock, 1)  # the server started echoing
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    async def main() -> int:
        listener = pe.listen(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        with listener:
            server = pe.spawn(_serve_echo, listener, stats)
            await rude_client(port)
            polite = await pe.join(_client(port, 1, 3), _client(port, 2, 3))
            await stats.all_closed.wait()
            server.abort()
            with pytest.raises(pe.Cancelled):
                await server
        return sum(polite)

    polite = pe.run(main)
    assert polite == sum(len(_payload(c, m)) for c in (1, 2) for m in range(3))
    assert (stats.accepted, stats.closed) == (3, 3)


def test_wait_readable_and_writable_on_a_socketpair() -> None:
    async def main() -> bytes:
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            b.setblocking(False)
            await pe.wait_writable(a)
            reader = pe.spawn(pe.recv, b, 100)
            await pe.sleep(0)
            assert not reader.done()
            a.send(b"hello")
            data: bytes = await reader
            return data

    assert pe.run(main) == b"hello"


def test_two_readers_of_one_socket_is_an_error_and_cancel_unregisters() -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        with a, b:
            first = pe.spawn(pe.wait_readable, b)
            await pe.sleep(0)
            with pytest.raises(pe.BusyResourceError, match="already waiting to read"):
                await pe.wait_readable(b)
            first.abort()
            with pytest.raises(pe.Cancelled):
                await first
            # The cancelled wait gave its place back.
            a.send(b"!")
            await pe.wait_readable(b)

    pe.run(main)


def test_socket_helpers_refuse_blocking_sockets() -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        with a, b, pytest.raises(ValueError, match="non-blocking"):
            await pe.recv(a, 1)

    pe.run(main)


def test_connect_to_a_closed_port_fails() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: refused

    async def main() -> None:
        with pytest.raises(ConnectionRefusedError):
            await pe.connect(("127.0.0.1", port))

    pe.run(main)


def test_a_socket_closed_under_a_waiter_does_not_hang_or_crash_the_kernel() -> None:
    async def main() -> str:
        a, b = socket.socketpair()
        with a:
            b.setblocking(False)
            reader = pe.spawn(pe.recv, b, 10)
            await pe.sleep(0)
            a.close()  # the peer goes away: readable, recv gives b""
            data = await reader
            b.close()
        return "ok" if data == b"" else "unexpected"

    assert pe.run(main) == "ok"


def test_a_reused_descriptor_number_is_watched_afresh() -> None:
    """The reactor keeps a socket's interest registered between two waits; a
    new socket that gets the number of a closed one must still be watched."""

    async def ping(reader: socket.socket, writer: socket.socket) -> bytes:
        with pe.timeout(5):  # a stale registration would hang here
            waiting = pe.spawn(pe.recv, reader, 10)
            await pe.sleep(0)
            writer.send(b"ping")
            return await waiting
        raise AssertionError("timeout() raises TimeoutError; it never swallows the error")

    async def main() -> list[bytes]:
        replies = []
        a, b = socket.socketpair()
        b.setblocking(False)
        number = b.fileno()
        replies.append(await ping(b, a))
        a.close()
        b.close()
        del b  # also: the registered socket object is gone
        pairs = [socket.socketpair() for _ in range(3)]
        reused = [s for pair in pairs for s in pair if s.fileno() == number]
        assert reused, "the OS reuses the lowest free number"
        other = next(s for pair in pairs if reused[0] in pair for s in pair if s is not reused[0])
        reused[0].setblocking(False)
        replies.append(await ping(reused[0], other))
        for pair in pairs:
            for sock in pair:
                sock.close()
        return replies

    assert pe.run(main) == [b"ping", b"ping"]


def test_wake_from_another_thread_while_sockets_are_watched() -> None:
    """With a socket waiter registered, the kernel idles in select and a
    thread wakes it through the socketpair."""

    async def main() -> bool:
        a, b = socket.socketpair()
        with a, b:
            watcher = pe.spawn(pe.wait_readable, b)
            event = pe.Event()
            await pe.sleep(0)
            thread = threading.Thread(target=event.set)
            thread.start()
            await event.wait()
            thread.join()
            watcher.abort()
            with pytest.raises(pe.Cancelled):
                await watcher
            return event.is_set()

    assert pe.run(main)
