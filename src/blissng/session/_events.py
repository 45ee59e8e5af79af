"""The server's events (object state changes, commands) fanned out to the API's subscribers.

Nothing here knows the server: it publishes, each subscriber (an API client following the
events) reads its own bounded stream.
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio


class ServerEvents:
    """Fan-out of server events (object state changes, commands) to API subscribers.

    Each subscriber gets a bounded memory stream; a subscriber too slow to keep up loses the
    oldest events rather than slowing the server (its ``dropped`` count says so).
    """

    def __init__(self, buffer: int = 1000) -> None:
        self.buffer = buffer
        self._subscribers: list[_Subscriber] = []

    def publish(self, event: dict[str, Any]) -> None:
        for subscriber in list(self._subscribers):
            subscriber.put(event)

    @contextlib.contextmanager
    def subscribe(self) -> Any:
        subscriber = _Subscriber(self.buffer)
        self._subscribers.append(subscriber)
        try:
            yield subscriber
        finally:
            self._subscribers.remove(subscriber)


class _Subscriber:
    def __init__(self, buffer: int) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[dict[str, Any]](buffer)
        self.dropped = 0

    def put(self, event: dict[str, Any]) -> None:
        """Queue ``event``; when the buffer is full, the oldest queued event makes room."""
        try:
            self.send.send_nowait(event)
            return
        except anyio.WouldBlock:
            pass
        try:
            self.receive.receive_nowait()
        except anyio.WouldBlock:  # a receiver is waiting: the buffer is no longer full
            pass
        else:
            self.dropped += 1
        self.send.send_nowait(event)
