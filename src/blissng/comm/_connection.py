"""One request/response API over any byte transport (serial line, TCP, unix socket).

Why one class: controllers are written once against ``write_readline`` and friends, and the
rules every device needs are enforced here, not in each controller:

- every read has a timeout, and the timeout error names the device, the command sent and the
  time waited; a late reply can never be taken for the answer to the next command: a
  timed-out socket is closed (a new one is clean); a serial line, where late replies come
  whatever is done, stays open and counts the replies it is owed until they come (a
  stopped device answers its whole pile when it resumes, its last line the request's);
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

One module of ~520 lines because the rules above are one critical section: the lock, the
reconnection and the count of owed serial replies must be read together to be trusted.
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

from blissng.comm._errors import CommTimeout, CommunicationError, ConnectionLost, ProtocolError

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
        # Replies owed to requests that were sent, then cancelled or timed out, on a line that
        # a reopen does not clean (serial): read and dropped before the next request is sent.
        self._owed = 0
        self._owed_wait = 0.0  # how long the next request waits for them
        self._sent_unanswered = False

    # -- transport (subclasses) -------------------------------------------------------------

    # Reopening a serial line does not stop a reply still on its way; a new socket is clean.
    REOPEN_DISCARDS_LATE_REPLIES = True
    # How long the next request waits for the reply owed to one that timed out: that reply is
    # already a whole timeout late (a silent or restarted device), and waiting another whole
    # timeout for it would double the cost of the first command after a device recovers.
    TIMED_OUT_REPLY_GRACE = 0.1

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
            await self._drop_owed_replies()
            self._sent_unanswered = True
            await self._write(frame)
            sent = anyio.current_time()  # the reply's time starts when the command is sent
            while True:
                remaining = max(sent + limit - anyio.current_time(), 1e-6)
                line = await self._read_until(self.eol, remaining, frame, (sent, limit))
                line = await self._last_of_a_burst(line)
                if expect is None or not self._late_reply_possible:
                    break
                text = line.decode(self.encoding, "replace")
                if re.fullmatch(expect, text) is not None:
                    self._late_reply_possible = False
                    break
                self.late_replies_skipped += 1
                self._trace(f"skipped {text!r}: the late reply of an earlier request")
            self._sent_unanswered = False
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
        may still come and must never be taken for the next request's. A connection that
        reopening clears (TCP) is closed (the next call reopens it); a serial line stays open
        and its next request reads and drops the owed reply first."""
        try:
            yield
        except anyio.get_cancelled_exc_class():
            if self.REOPEN_DISCARDS_LATE_REPLIES:
                await self._drop("request cancelled before its reply")
            else:
                # Reopening a serial line flushes what it received: a reply that arrived in
                # between would be lost and waited for a whole timeout by the next request.
                # The line stays open; the next request reads and drops the reply first.
                self._trace("request cancelled before its reply: its reply is owed")
                self._late_reply_possible = True
                self._owe_reply(self.timeout)
            raise
        finally:
            self._sent_unanswered = False

    def _owe_reply(self, wait: float) -> None:
        """The request whose command was sent will get no reader: on a line that keeps a late
        reply, the next request reads and drops it first (a reply that looks like its own
        would otherwise be taken for it: ``OK`` for ``OK``, one behind for ever), waiting
        for it up to ``wait`` seconds."""
        if self._sent_unanswered and not self.REOPEN_DISCARDS_LATE_REPLIES:
            self._owed += 1
            self._owed_wait = max(self._owed_wait, wait)

    async def _drop_owed_replies(self) -> None:
        """Read the replies still owed to cancelled or timed-out requests, then forget them.
        Those that do not come within their wait stay owed: the request is sent, and
        :meth:`_last_of_a_burst` tells its reply from theirs."""
        while self._owed:
            try:
                line = await self._read_until(self.eol, self._owed_wait, None)
            except CommTimeout:
                return
            self._drop_owed(line)
        self._owed_wait = 0.0
        self._late_reply_possible = False

    async def _last_of_a_burst(self, line: bytes) -> bytes:
        """The request's reply when replies are still owed: the last line of what comes.

        A device that ignored a command (a silent device) owes a reply it will never send:
        only the request's own line comes. A device that stopped (SIGSTOP, a firmware busy
        for seconds) kept every command sent meanwhile and answers them all at once when it
        resumes: the owed lines, then the request's. So a line followed within
        ``TIMED_OUT_REPLY_GRACE`` by another was an owed one. Forgetting the count instead
        left every later reply one behind for ever (``?POS`` answered ``OK``)."""
        while self._owed:
            try:
                following = await self._read_until(self.eol, self.TIMED_OUT_REPLY_GRACE, None)
            except CommTimeout:
                self._trace(f"{self._owed} owed replies taken as lost (none came)")
                self._owed, self._owed_wait = 0, 0.0
                break
            self._drop_owed(line)
            line = following
        return line

    def _drop_owed(self, line: bytes) -> None:
        self._owed -= 1
        self.late_replies_skipped += 1
        self._trace(f"dropped {line!r}: the late reply of a timed-out or cancelled request")

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
        if self.close_on_timeout and self.REOPEN_DISCARDS_LATE_REPLIES:
            # A late reply must never be taken for the answer to the next command. A serial
            # line stays open: reopening flushes what came, replies counted as owed.
            await self._drop(f"timeout after {waited:.3f} s")
        if command is not None:
            self._late_reply_possible = not self.REOPEN_DISCARDS_LATE_REPLIES
            self._owe_reply(min(self.timeout, self.TIMED_OUT_REPLY_GRACE))
            self._sent_unanswered = False
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
