"""Limits on what clients can open: websockets of each kind, request bodies, descriptors.

Everything a client opens costs the server file descriptors: a plot websocket its socket and
two Redis connections, an events websocket its socket. Without limits, 331 browser tabs once
took all 1,024 descriptors of a demo: the API failed, asyncio logged ``accept() out of system
resource`` about 6,000 times a second, and the next file the server needed ended it. So:

- each kind of websocket has a maximum (:class:`Slots`); above it, or when the process is
  within :data:`FD_RESERVE` descriptors of its limit, a new one is refused at once with close
  code 4429 and a reason that says which limit and what to do;
- request bodies are read up to a size (:func:`read_body`), announced or not, and refused
  with 413 beyond it, before the rest is read;
- refusals are logged at most once per :data:`LOG_PERIOD` seconds per kind, with their count
  (:class:`RateLimitedLog`), so that a flood of clients never floods the log.

docs/reliability.md lists the limits and the tests that show them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect, Request

from blissng.errors import BlissngError

log = logging.getLogger("blissng.web")

FD_RESERVE = 64  # descriptors kept free for the server's own work (files, Redis, children)
LOG_PERIOD = 10.0  # seconds between two log lines about the same kind of refusal
MAX_BODY = 1024 * 1024  # bytes of an API request body
CLOSE_TOO_MANY = 4429


class RateLimitedLog:
    """One warning for the first event of a kind, then at most one line per ``period``
    seconds with the number of events since the last line."""

    def __init__(self, period: float = LOG_PERIOD) -> None:
        self.period = period
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def warning(self, kind: str, message: str) -> None:
        now = time.monotonic()
        self._count[kind] = self._count.get(kind, 0) + 1
        last = self._last.get(kind)
        if last is not None and now - last < self.period:
            return
        count = self._count.pop(kind)
        self._last[kind] = now
        more = f" ({count} times in the last {now - last:.0f} s)" if last is not None else ""
        log.warning("%s%s", message, more)


refusals = RateLimitedLog()


def descriptor_limit() -> int:
    """The process's soft limit of open file descriptors."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def open_descriptors() -> int:
    """How many file descriptors the process has open (0 where /proc is not there)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def descriptors_short(reserve: int = FD_RESERVE) -> str | None:
    """Why a new connection must be refused to keep ``reserve`` descriptors free, or None."""
    limit = descriptor_limit()
    used = open_descriptors()
    if used >= limit - reserve:
        return (
            f"the server is short of file descriptors ({used} open, limit {limit}); close "
            "other tabs or clients and retry"
        )
    return None


@dataclass
class Slots:
    """How many websockets of one ``kind`` are open, at most ``limit``."""

    kind: str
    limit: int
    count: int = 0
    refused: int = field(default=0)

    def refusal(self) -> str | None:
        """Why one more must be refused now, or None."""
        if self.count >= self.limit:
            return (
                f"too many {self.kind} websockets (limit {self.limit}); close other tabs or "
                "clients and retry"
            )
        return descriptors_short()

    @contextlib.contextmanager
    def held(self) -> Iterator[str | None]:
        """``with slots.held() as refusal:``: None and one slot taken for the block, or the
        reason of the refusal (logged, rate-limited) and nothing taken."""
        refusal = self.refusal()
        if refusal is not None:
            self.refused += 1
            refusals.warning(self.kind, f"refused a {self.kind} websocket: {refusal}")
            yield refusal
            return
        self.count += 1
        try:
            yield None
        finally:
            self.count -= 1


def plot_limit() -> int:
    """Plot websockets a process of this descriptor limit can hold: each costs three
    descriptors, and at most half of what the limit leaves beyond the reserve goes to plots."""
    return max(8, min(200, (descriptor_limit() - 2 * FD_RESERVE) // 6))


def events_limit() -> int:
    """Events websockets (one descriptor each): at most a quarter of what is left."""
    return max(8, min(200, (descriptor_limit() - 2 * FD_RESERVE) // 4))


ACCEPT_ERROR = "socket.accept() out of system resource"
FIRST_DATA_TIMEOUT = 10.0  # seconds a new connection may stay silent before it is closed


@contextlib.contextmanager
def quiet_accept_errors() -> Iterator[None]:
    """While the block runs, a listening socket that cannot accept for want of descriptors
    refuses what waits instead of retrying it: asyncio logged each failed ``accept()`` and
    retried them all a second later (thousands of lines a second, the CPU with them).

    The handler keeps one descriptor in reserve: on ``accept() out of system resource`` it
    frees it, accepts and closes at once every connection waiting (the client sees its
    connection reset), and takes it back. This is logged once, then every ``LOG_PERIOD``
    with a count. Other loop errors go to the handler that was there.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    spare = [_open_spare()]

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exception = context.get("exception")
        if context.get("message") == ACCEPT_ERROR:
            refused = _refuse_waiting(context.get("socket"), spare)
            refusals.warning(
                "accept",
                f"no file descriptor left to accept connections ({exception}): {refused} "
                "refused at once; new ones are refused until some close",
            )
            return
        if isinstance(exception, ValueError) and "_start_serving" in repr(context.get("handle")):
            return  # asyncio's retry of an accept, after its server closed: nothing to do
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    try:
        yield
    finally:
        loop.set_exception_handler(previous)
        if spare[0] is not None:
            os.close(spare[0])


def _open_spare() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return None


def _refuse_waiting(listening: Any, spare: list[int | None]) -> int:
    """Accept and close every connection waiting on ``listening`` (asyncio's wrapper of a
    listening socket), with the descriptor kept in reserve; how many were refused."""
    import socket

    if listening is None or spare[0] is None:
        spare[0] = spare[0] if spare[0] is not None else _open_spare()
        return 0
    os.close(spare[0])
    spare[0] = None
    refused = 0
    server = socket.socket(fileno=listening.fileno())  # the same descriptor, not a copy
    try:
        while refused < 10_000:
            try:
                connection, _address = server.accept()
            except OSError:  # nothing waits any more (BlockingIOError), or no descriptor
                break
            connection.close()
            refused += 1
    finally:
        server.detach()  # the listening socket stays open: it is asyncio's
        spare[0] = _open_spare()
    return refused


def closing_silent_connections(protocol: type[Any]) -> type[Any]:
    """uvicorn's HTTP protocol class, closing a connection that sends nothing during its
    first ``FIRST_DATA_TIMEOUT`` seconds: a connection opened and left silent held one of
    the server's descriptors until the client went away (uvicorn times out idle connections
    only after a first request)."""

    class ClosingSilentConnections(protocol):
        _silence: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._silence = self.loop.call_later(FIRST_DATA_TIMEOUT, transport.close)

        def data_received(self, data: bytes) -> None:
            if self._silence is not None:
                self._silence.cancel()
                self._silence = None
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._silence is not None:
                self._silence.cancel()
                self._silence = None
            super().connection_lost(exc)

    return ClosingSilentConnections


class BodyTooLarge(BlissngError):
    """A request body above the limit (announced by Content-Length, or streamed)."""


class BodyCut(BlissngError, ConnectionError):
    """The client went away before its request body was complete (a network gone, a
    client killed mid-request): nothing is run, and it is not a server error."""


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request's body, refused with :class:`BodyTooLarge` as soon as it is known to be
    larger than ``limit`` bytes (from its Content-Length, or while it streams in)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise BodyTooLarge(f"the request body ({declared} bytes) is larger than {limit}")
        except ValueError:
            pass  # a bad header: the server below refuses it or streams the body
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"the request body is larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # was a traceback in the log, "Exception in ASGI application"
        raise BodyCut(f"the client went away after {size} bytes of its request body") from None
    return b"".join(chunks)


__all__ = [
    "CLOSE_TOO_MANY",
    "FD_RESERVE",
    "MAX_BODY",
    "BodyCut",
    "BodyTooLarge",
    "RateLimitedLog",
    "Slots",
    "closing_silent_connections",
    "descriptor_limit",
    "descriptors_short",
    "events_limit",
    "open_descriptors",
    "plot_limit",
    "quiet_accept_errors",
    "read_body",
    "refusals",
]
