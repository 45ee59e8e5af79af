"""One request/response API over any byte transport (serial line, TCP, unix socket).

Why one class: controllers are written once against ``write_readline`` and friends, and the
rules every device needs are enforced here, not in each controller:

- every read has a timeout, and the timeout error names the device, the command sent and the
  time waited; a timed-out connection is closed, so a late reply can never be taken for the
  answer to the next command;
- one lock per connection: a request and its reply are one critical section, so concurrent
  callers never interleave. ``async with conn.locked():`` holds it across several calls (it is
  re-entrant for the task that holds it);
- a connection that was lost (the device closed it, a cable was pulled) is reopened by the next
  call; a peer that closed while the connection was idle is noticed before the next request is
  sent, so that request goes to the new connection;
- replies that are not text in the expected encoding (or do not match ``expect``) raise
  :class:`ProtocolError`;
- a per-device trace of every byte sent and received, switched at run time with
  :func:`blissng.comm.debugon` (it logs under ``blissng.comm.<device>``).
"""

from __future__ import annotations

import abc
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType

import anyio
import anyio.lowlevel

from blissng.comm.errors import CommTimeout, CommunicationError, ConnectionLost, ProtocolError

LOGGER_PREFIX = "blissng.comm"

Command = bytes | str


class Connection(abc.ABC):
    """A lazily opened, lockable, traced request/response connection to one device.

    ``eol`` ends the device's reply lines; ``write_eol`` (default ``eol``) ends the commands
    sent by :meth:`write_readline` and friends. ``timeout`` is the default for every read;
    ``connect_timeout`` (default ``timeout``) for opening.
    """

    def __init__(
        self,
        name: str,
        *,
        timeout: float = 1.0,
        eol: bytes = b"\n",
        write_eol: bytes | None = None,
        encoding: str = "ascii",
        connect_timeout: float | None = None,
        max_line: int = 1 << 20,
        close_on_timeout: bool = True,
    ) -> None:
        if not name:
            raise ValueError("a connection needs the device's name (used in errors and traces)")
        if timeout <= 0:
            raise ValueError(f"connection {name!r}: timeout must be > 0 s, got {timeout!r}")
        self.name = name
        self.timeout = float(timeout)
        self.eol = eol
        self.write_eol = eol if write_eol is None else write_eol
        self.encoding = encoding
        self.connect_timeout = float(connect_timeout if connect_timeout is not None else timeout)
        self.max_line = max_line
        self.close_on_timeout = close_on_timeout
        self.logger = logging.getLogger(f"{LOGGER_PREFIX}.{name}")
        self._lock = anyio.Lock(fast_acquire=True)  # no extra loop turn when uncontended
        self._owner: int | None = None
        self._buffer = bytearray()
        self._open = False
        self.connects = 0  # how many times the transport was (re)opened
        self._late_reply_possible = False
        self.late_replies_skipped = 0

    # -- transport (subclasses) -------------------------------------------------------------

    # Reopening a serial line does not stop a reply still on its way; a new socket is clean.
    REOPEN_DISCARDS_LATE_REPLIES = True

    @property
    @abc.abstractmethod
    def address(self) -> str:
        """Where the device is (a URL), for messages."""

    @abc.abstractmethod
    async def _transport_open(self) -> None: ...

    @abc.abstractmethod
    async def _transport_send(self, data: bytes) -> None: ...

    @abc.abstractmethod
    async def _transport_receive(self) -> bytes:
        """The next chunk; ``b""`` at end of stream."""

    @abc.abstractmethod
    async def _transport_close(self) -> None: ...

    @abc.abstractmethod
    def _transport_lost(self) -> bool:
        """True if the peer closed (or the line broke) while we were not reading."""

    # -- life cycle -------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._open

    async def connect(self) -> None:
        """Open the connection if it is not open (idempotent)."""
        async with self.locked():
            await self._ensure_open()

    async def close(self) -> None:
        """Close the connection; the next call reopens it."""
        async with self.locked():
            await self._drop("closed by the client")

    aclose = close

    async def __aenter__(self) -> Connection:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @asynccontextmanager
    async def locked(self) -> AsyncIterator[Connection]:
        """Hold the connection's lock across several calls (re-entrant for this task)."""
        if self._owner is not None and self._owner == anyio.get_current_task().id:
            yield self  # re-entered by the task that holds the lock
            return
        async with self._lock:
            self._owner = anyio.get_current_task().id
            try:
                yield self
            finally:
                self._owner = None

    # -- requests ---------------------------------------------------------------------------

    async def write(self, data: Command) -> None:
        """Send ``data``: a ``str`` is a command line (encoded, ``write_eol`` added if missing);
        ``bytes`` are sent exactly as given."""
        async with self.locked():
            await self._write(self._frame(data) if isinstance(data, str) else data)

    async def readline(self, *, timeout: float | None = None) -> str:
        """The next reply line, decoded, without its terminator."""
        async with self.locked():
            return self._decode(await self._read_until(self.eol, timeout, None), None)

    async def readlines(self, n: int, *, timeout: float | None = None) -> list[str]:
        """The next ``n`` lines (one timeout for all of them)."""
        async with self.locked():
            return await self._readlines(n, timeout, None)

    async def read_until(self, terminator: bytes, *, timeout: float | None = None) -> bytes:
        """Raw bytes up to ``terminator`` (excluded, consumed)."""
        async with self.locked():
            return await self._read_until(terminator, timeout, None)

    async def read(self, n: int, *, timeout: float | None = None) -> bytes:
        """Exactly ``n`` bytes."""
        async with self.locked():
            return await self._read_exactly(n, timeout, None)

    async def read_some(self, max_bytes: int = 65536, *, timeout: float | None = None) -> bytes:
        """What is buffered, or the next chunk received (at most ``max_bytes``): for readers of
        streaming devices that want every byte as soon as it comes."""
        async with self.locked():
            if not self._buffer:
                await self._fill_with_timeout(timeout, None, "no data")
            else:
                await anyio.lowlevel.checkpoint()
            data = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
            return data

    async def write_readline(
        self,
        command: Command,
        *,
        timeout: float | None = None,
        expect: str | re.Pattern[str] | None = None,
    ) -> str:
        """Send a command line, return its one-line reply (decoded, terminator stripped).

        ``expect``: a regular expression the whole reply must match, else ProtocolError. On a
        line that cannot be reset (serial) after a timed-out or cancelled request, replies
        that do not match are taken for that request's late reply and skipped (traced).
        """
        frame = self._frame(command)
        limit = self.timeout if timeout is None else timeout
        async with self.locked(), self._request():
            await self._write(frame)
            sent = anyio.current_time()  # the reply's time starts when the command is sent
            while True:
                remaining = max(sent + limit - anyio.current_time(), 1e-6)
                line = await self._read_until(self.eol, remaining, frame, (sent, limit))
                if expect is None or not self._late_reply_possible:
                    break
                text = line.decode(self.encoding, "replace")
                if re.fullmatch(expect, text) is not None:
                    self._late_reply_possible = False
                    break
                self.late_replies_skipped += 1
                self._trace(f"skipped {text!r}: the late reply of an earlier request")
        return self._decode(line, frame, expect)

    async def write_readlines(
        self, command: Command, n: int, *, timeout: float | None = None
    ) -> list[str]:
        """Send a command line, return its ``n`` reply lines."""
        frame = self._frame(command)
        async with self.locked(), self._request():
            await self._write(frame)
            return await self._readlines(n, timeout, frame)

    async def write_read(self, command: Command, n: int, *, timeout: float | None = None) -> bytes:
        """Send a command line, return exactly ``n`` reply bytes."""
        frame = self._frame(command)
        async with self.locked(), self._request():
            await self._write(frame)
            return await self._read_exactly(n, timeout, frame)

    def flush_input(self) -> int:
        """Discard what was received and not read yet; returns how many bytes."""
        n = len(self._buffer)
        self._buffer.clear()
        return n

    # -- internals --------------------------------------------------------------------------

    @asynccontextmanager
    async def _request(self) -> AsyncIterator[None]:
        """A request cancelled (an abort) between sending and its complete reply: the reply
        may still come and must never be taken for the next request's, so the connection is
        closed (the next call reopens it)."""
        try:
            yield
        except anyio.get_cancelled_exc_class():
            await self._drop("request cancelled before its reply")
            self._late_reply_possible = not self.REOPEN_DISCARDS_LATE_REPLIES
            raise

    def _frame(self, command: Command) -> bytes:
        data = command.encode(self.encoding) if isinstance(command, str) else bytes(command)
        if self.write_eol and not data.endswith(self.write_eol):
            data += self.write_eol
        return data

    def _decode(
        self, line: bytes, command: bytes | None, expect: str | re.Pattern[str] | None = None
    ) -> str:
        try:
            text = line.decode(self.encoding)
        except UnicodeDecodeError:
            raise ProtocolError(
                self.name, f"reply {_clip(line)} is not {self.encoding} text", command=command
            ) from None
        if expect is not None and re.fullmatch(expect, text) is None:
            pattern = expect.pattern if isinstance(expect, re.Pattern) else expect
            raise ProtocolError(
                self.name,
                f"unexpected reply {text!r} (expected {pattern!r})",
                command=command,
            )
        return text

    async def _ensure_open(self, check_lost: bool = False) -> None:
        if check_lost and self._open and self._transport_lost():
            self._trace("peer closed the connection while idle; reopening")
            await self._drop("lost while idle")
        if self._open:
            return
        waited = anyio.current_time()
        try:
            with anyio.fail_after(self.connect_timeout):
                await self._transport_open()
        except TimeoutError:
            raise CommTimeout(
                self.name,
                anyio.current_time() - waited,
                what=f"cannot connect to {self.address}",
                timeout=self.connect_timeout,
            ) from None
        except OSError as exc:
            raise CommunicationError(self.name, f"cannot connect to {self.address}: {exc}") from exc
        self._buffer.clear()
        self._open = True
        self.connects += 1
        self._trace(f"connected to {self.address}")

    async def _drop(self, why: str) -> None:
        if not self._open:
            return
        self._open = False
        self._buffer.clear()
        self._trace(f"connection closed: {why}")
        with anyio.CancelScope(shield=True):
            try:
                await self._transport_close()
            except Exception as exc:  # closing a broken transport may fail: it is gone anyway
                self.logger.debug("closing %s: %r", self.address, exc)

    async def _write(self, data: bytes) -> None:
        await self._ensure_open(check_lost=True)
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("-> %r", data)
        try:
            await self._transport_send(data)
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            await self._drop(f"send failed: {exc!r}")
            raise ConnectionLost(
                self.name,
                f"connection to {self.address} lost while sending: {exc!r}",
                command=data,
            ) from exc

    async def _fill(self, command: bytes | None) -> None:
        try:
            chunk = await self._transport_receive()
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            await self._drop(f"receive failed: {exc!r}")
            raise ConnectionLost(
                self.name, f"connection to {self.address} lost: {exc!r}", command=command
            ) from exc
        if not chunk:
            await self._drop("closed by the device")
            raise ConnectionLost(
                self.name, f"connection to {self.address} closed by the device", command=command
            )
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("<- %r", chunk)
        self._buffer += chunk

    async def _fill_with_timeout(
        self, timeout: float | None, command: bytes | None, what: str
    ) -> None:
        await self._ensure_open()
        limit = self.timeout if timeout is None else timeout
        start = anyio.current_time()
        with anyio.move_on_after(limit):
            await self._fill(command)
            return
        await self._timed_out(start, limit, command, what)

    async def _timed_out(
        self, start: float, limit: float, command: bytes | None, what: str
    ) -> None:
        waited = anyio.current_time() - start
        if self._buffer:
            what = f"{what} (received {_clip(bytes(self._buffer))} so far)"
        if self.close_on_timeout:
            # A late reply must never be taken for the answer to the next command.
            await self._drop(f"timeout after {waited:.3f} s")
        if command is not None:
            self._late_reply_possible = not self.REOPEN_DISCARDS_LATE_REPLIES
        raise CommTimeout(self.name, waited, command=command, what=what, timeout=limit)

    async def _read_until(
        self,
        terminator: bytes,
        timeout: float | None,
        command: bytes | None,
        since: tuple[float, float] | None = None,
    ) -> bytes:
        """``since``: (start, limit) of a reply read in several parts, for the error message."""
        await self._ensure_open()
        limit = self.timeout if timeout is None else timeout
        start = anyio.current_time()
        awaited = False
        with anyio.move_on_after(limit):
            searched = 0
            while True:
                index = self._buffer.find(terminator, searched)
                if index >= 0:
                    line = bytes(self._buffer[:index])
                    del self._buffer[: index + len(terminator)]
                    if not awaited:
                        await anyio.lowlevel.checkpoint()
                    return line
                if len(self._buffer) > self.max_line:
                    head = _clip(bytes(self._buffer[:40]))
                    self._buffer.clear()
                    raise ProtocolError(
                        self.name,
                        f"no {terminator!r} in {self.max_line} bytes received (starts {head})",
                        command=command,
                    )
                searched = max(0, len(self._buffer) - len(terminator) + 1)
                awaited = True
                await self._fill(command)
        first, whole = since if since is not None else (start, limit)
        await self._timed_out(first, whole, command, "no complete reply")
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read_exactly(self, n: int, timeout: float | None, command: bytes | None) -> bytes:
        await self._ensure_open()
        limit = self.timeout if timeout is None else timeout
        start = anyio.current_time()
        with anyio.move_on_after(limit):
            while len(self._buffer) < n:
                await self._fill(command)
            data = bytes(self._buffer[:n])
            del self._buffer[:n]
            await anyio.lowlevel.checkpoint()
            return data
        await self._timed_out(start, limit, command, f"fewer than {n} bytes")
        raise AssertionError("unreachable")  # pragma: no cover

    async def _readlines(self, n: int, timeout: float | None, command: bytes | None) -> list[str]:
        limit = self.timeout if timeout is None else timeout
        start = anyio.current_time()
        lines = []
        for _ in range(n):
            remaining = max(start + limit - anyio.current_time(), 1e-6)
            line = await self._read_until(self.eol, remaining, command, (start, limit))
            lines.append(self._decode(line, command))
        return lines

    def _trace(self, message: str) -> None:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("%s", message)

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        return f"<{type(self).__name__} {self.name!r} {self.address} {state}>"


def _clip(data: bytes, limit: int = 60) -> str:
    text = repr(data)
    return text if len(text) <= limit else text[: limit - 3] + "..."
