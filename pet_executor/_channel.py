"""A bounded, runtime-neutral channel (multi-producer, multi-consumer).

Items wait in a buffer of ``capacity``; a sender waits for room, a receiver
for an item. Both queues are first come, first served: when room (or an
item) appears, it is reserved for the first waiter, which takes it when it
is polled again. A waiter dropped (cancelled) while holding a reservation
passes it on, so cancelling a send means the item was not sent, and
cancelling a receive loses no item.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

from ._future import Context, Poll, Waker
from ._kernel import FutureBase

__all__ = ("Channel", "ChannelClosed")

T = TypeVar("T")

_PENDING = Poll.PENDING
_READY = Poll.ready(None)

_NEW = 0
_QUEUED = 1
_GRANTED = 2
_DONE = 3


class ChannelClosed(Exception):
    """Sending on a closed channel, or receiving from one that is closed and
    drained."""


class Channel(Generic[T]):
    """``await ch.send(item)``, ``await ch.receive()``, ``ch.close()``, and
    ``async for item in ch`` (which ends once the channel is closed and
    drained). Usable from several tasks, threads and runtimes at once."""

    __slots__ = (
        "_buffer",
        "_capacity",
        "_closed",
        "_mutex",
        "_receivers",
        "_recv_reserved",
        "_send_reserved",
        "_senders",
    )

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(
                f"a channel's capacity must be >= 1, not {capacity!r} (a rendezvous channel "
                "cannot keep 'cancelling a send means it was not sent')"
            )
        self._capacity = capacity
        self._buffer: deque[T] = deque()
        self._closed = False
        self._mutex = threading.Lock()
        self._senders: dict[_Send[T], None] = {}
        self._receivers: dict[_Receive[T], None] = {}
        # Room reserved for granted senders, items for granted receivers.
        self._send_reserved = 0
        self._recv_reserved = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        """Items buffered now."""
        return len(self._buffer)

    def send(self, item: T) -> _Send[T]:
        """A future that puts ``item`` in the channel once there is room;
        raises :class:`ChannelClosed` if the channel is (or gets) closed."""
        return _Send(self, item)

    def receive(self) -> _Receive[T]:
        """A future that takes the next item; raises :class:`ChannelClosed`
        once the channel is closed and drained."""
        return _Receive(self, False)

    def close(self) -> None:
        """No more sends: waiting senders fail; receivers drain what is left."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            wakers = [s._waker for s in self._senders] + [r._waker for r in self._receivers]
        for waker in wakers:
            if waker is not None:
                waker.wake()

    def __aiter__(self) -> Channel[T]:
        return self

    def __anext__(self) -> _Receive[T]:
        return _Receive(self, True)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<pet_executor.Channel {state} {len(self._buffer)}/{self._capacity}>"

    # Under the mutex: reserve what just became available for the first waiter.
    def _grant_receiver(self) -> Waker | None:
        receivers = self._receivers
        if receivers and len(self._buffer) > self._recv_reserved:
            first = next(iter(receivers))
            del receivers[first]
            first._state = _GRANTED
            self._recv_reserved += 1
            return first._waker
        return None

    def _grant_sender(self) -> Waker | None:
        senders = self._senders
        if senders and len(self._buffer) + self._send_reserved < self._capacity:
            first = next(iter(senders))
            del senders[first]
            first._state = _GRANTED
            self._send_reserved += 1
            return first._waker
        return None


class _Send(FutureBase[None], Generic[T]):
    __slots__ = ("_channel", "_item", "_state", "_waker")

    def __init__(self, channel: Channel[T], item: T) -> None:
        self._channel = channel
        self._item: T | None = item
        self._state = _NEW
        self._waker: Waker | None = None

    def poll(self, cx: Context, /) -> Poll[None]:
        ch = self._channel
        with ch._mutex:
            state = self._state
            if ch._closed:
                if state is _GRANTED:
                    ch._send_reserved -= 1
                elif state is _QUEUED:
                    del ch._senders[self]
                self._state = _DONE
                self._item = None
                raise ChannelClosed("send on a closed channel")
            if state is _GRANTED:
                ch._send_reserved -= 1
            elif not (
                state is _NEW
                and not ch._senders
                and len(ch._buffer) + ch._send_reserved < ch._capacity
            ):
                if state is _NEW:
                    ch._senders[self] = None
                    self._state = _QUEUED
                self._waker = cx.waker
                return _PENDING
            ch._buffer.append(self._item)  # type: ignore[arg-type]
            self._item = None
            self._state = _DONE
            waker = ch._grant_receiver()
        if waker is not None:
            waker.wake()
        return _READY

    def drop(self) -> None:
        ch = self._channel
        waker = None
        with ch._mutex:
            if self._state is _QUEUED:
                del ch._senders[self]
            elif self._state is _GRANTED:
                ch._send_reserved -= 1
                waker = ch._grant_sender()
            self._state = _DONE
            self._item = None
        if waker is not None:
            waker.wake()


class _Receive(FutureBase[T]):
    __slots__ = ("_channel", "_iterating", "_state", "_waker")

    def __init__(self, channel: Channel[T], iterating: bool) -> None:
        self._channel = channel
        self._iterating = iterating
        self._state = _NEW
        self._waker: Waker | None = None

    def poll(self, cx: Context, /) -> Poll[T]:
        ch = self._channel
        with ch._mutex:
            state = self._state
            if state is _GRANTED:
                ch._recv_reserved -= 1
            elif not (state is _NEW and not ch._receivers and len(ch._buffer) > ch._recv_reserved):
                if ch._closed:
                    if state is _QUEUED:
                        del ch._receivers[self]
                    self._state = _DONE
                    if self._iterating:
                        raise StopAsyncIteration
                    raise ChannelClosed("receive from a closed and drained channel")
                if state is _NEW:
                    ch._receivers[self] = None
                    self._state = _QUEUED
                self._waker = cx.waker
                return _PENDING
            item = ch._buffer.popleft()
            self._state = _DONE
            waker = ch._grant_sender()
        if waker is not None:
            waker.wake()
        return Poll(item)

    def drop(self) -> None:
        ch = self._channel
        waker = None
        with ch._mutex:
            if self._state is _QUEUED:
                del ch._receivers[self]
            elif self._state is _GRANTED:
                ch._recv_reserved -= 1
                waker = ch._grant_receiver()
            self._state = _DONE
        if waker is not None:
            waker.wake()
