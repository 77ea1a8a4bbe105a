"""Admission of requests by their size: a gate on the bytes of requests being decoded
and answered at once, so that a burst of large requests queues rather than decodes
all together (asyncio; no I/O).

Decoding a request takes five to seven times its size on the wire, so the server's
memory follows the bytes it admits. A request fits when the admitted bytes plus its own
stay within the capacity. One that does not waits its turn, behind the others waiting
but not behind requests that fit, and is refused at once when the bytes waiting would
exceed ``queue_capacity`` (waiting requests hold only their undecoded bytes, about
twice their size, but those too are memory). A request larger than the capacity is
admitted alone, once nothing else is in flight.
"""

from __future__ import annotations

import asyncio
import collections

__all__ = ["ByteGate"]


class ByteGate:
    """Admits requests while the bytes in flight stay within ``capacity``, and lets
    up to ``queue_capacity`` bytes of requests wait."""

    def __init__(self, capacity: int, queue_capacity: int) -> None:
        if capacity <= 0 or queue_capacity < 0:
            raise ValueError(
                f"capacity must be positive and queue_capacity not negative, got {capacity} "
                f"and {queue_capacity}"
            )
        self.capacity = capacity
        self.queue_capacity = queue_capacity
        self.in_flight = 0
        """Bytes of the requests admitted and not yet released."""
        self.waiting = 0
        """Bytes of the requests waiting to be admitted."""
        self._queue: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    def _fits(self, size: int) -> bool:
        return self.in_flight == 0 or self.in_flight + size <= self.capacity

    async def acquire(self, size: int) -> bool:
        """Admit a request of ``size`` bytes, waiting for its turn if need be; False
        when it is refused because the queue is full. Cancelling the wait (the
        caller's deadline, say) gives up its place. Release what was admitted."""
        if self._fits(size):
            # Even past requests waiting for more room: small requests, the usual ones,
            # never queue behind a large one. A large one still gets its turn as soon
            # as the bytes in flight leave it room, first come first served.
            self.in_flight += size
            return True
        if self.waiting + size > self.queue_capacity:
            return False
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, turn)
        self._queue.append(entry)
        self.waiting += size
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release(size)  # admitted just as the wait was cancelled
            else:
                self._queue.remove(entry)
                self.waiting -= size
                self._admit_next()
            raise
        return True

    def release(self, size: int) -> None:
        """The request admitted with ``size`` bytes is done: let waiting ones in."""
        self.in_flight -= size
        self._admit_next()

    def _admit_next(self) -> None:
        while self._queue:
            size, turn = self._queue[0]
            if not self._fits(size):
                return
            self._queue.popleft()
            self.waiting -= size
            self.in_flight += size
            turn.set_result(None)
