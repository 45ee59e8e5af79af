"""The request/reply dialect every blissng simulator speaks (docs/sim-protocols.md).

One reply line per request; ``OK`` for commands that change something; ``ERR <code> <msg>``
for refusals. :class:`SimClient` sends a command over a :mod:`blissng.comm` connection and
turns ``ERR`` replies into :class:`blissng.comm.ErrorReply` naming the device and command,
and unexpected replies into :class:`blissng.comm.ProtocolError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import numpy as np

from blissng.comm import Connection, ErrorReply, ProtocolError, connection_from_url

from ._addresses import resolve_address

ERROR_CODES = {
    1: "unknown command",
    2: "bad arguments",
    3: "unknown axis/channel/output",
    4: "axis moving",
    5: "at limit",
    6: "axis disabled",
    7: "axis in fault",
    8: "bad value",
    9: "busy: another client is connected",
    10: "wrong state",
}


#: What the replies look like, to tell a late reply of another request from this one's.
_ERROR_REPLY = r"ERR\b.*"
_NUMBERS_REPLY = r"(?i:[\s\d.e+\-nafi]*)"  # numbers, nan and inf included


class SimCommandError(ErrorReply):
    """The simulator refused a command (``ERR <code> <message>``)."""

    def __init__(self, device: str, code: int, message: str, command: str) -> None:
        self.code = code
        super().__init__(device, f"refused (ERR {code}: {message})", command=command)


class SimClient:
    """A lazily opened connection to one simulator, addressed by URL or ``sim://NAME``."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        timeout: float = 2.0,
        eol: bytes = b"\n",
        write_eol: bytes | None = None,
        **options: Any,
    ) -> None:
        self.name = name
        self.url = url
        self.timeout = timeout
        self._options = {"timeout": timeout, "eol": eol, "write_eol": write_eol, **options}
        self._conn: Connection | None = None

    @property
    def conn(self) -> Connection:
        """The connection (created on first use: ``sim://`` resolved then)."""
        if self._conn is None:
            address = resolve_address(self.url, device=self.name)
            self._conn = connection_from_url(address, name=self.name, **self._options)
        return self._conn

    async def ask(self, command: str, *, expect: str | None = None) -> str:
        """Send ``command``, return its reply line; ``ERR`` replies raise.

        ``expect``: a regular expression of the reply (an ``ERR`` reply is always expected
        too). On a serial line, the late reply of an earlier cancelled request can still come
        after the port was reopened; with ``expect`` such a reply is recognised and skipped
        instead of being taken for this request's (:meth:`blissng.comm.Connection.
        write_readline`).
        """
        conn = self.conn
        pattern = None if expect is None else f"(?:{expect})|{_ERROR_REPLY}"
        try:
            reply = await conn.write_readline(command, expect=pattern)
        except anyio.get_cancelled_exc_class():
            await self._abandon(conn)
            raise
        return self.check(reply, command)

    @contextlib.asynccontextmanager
    async def exchange(self) -> AsyncIterator[Connection]:
        """The locked connection, for a request whose reply spans several reads."""
        conn = self.conn
        try:
            async with conn.locked():
                yield conn
        except anyio.get_cancelled_exc_class():
            await self._abandon(conn)
            raise

    @staticmethod
    async def _abandon(conn: Connection) -> None:
        """A request was cancelled after it was sent: its reply may still come and must not
        be taken for the next request's, so a connection that a reopening clears (TCP) is
        closed (reopened on next use). A serial line stays open: reopening it flushes what
        it received, and the connection reads and drops the owed reply before the next
        request instead (reopened, it would wait a whole timeout for a reply flushed away)."""
        if not conn.REOPEN_DISCARDS_LATE_REPLIES:
            return
        with anyio.CancelScope(shield=True):
            await conn.close()

    def check(self, reply: str, command: str) -> str:
        if reply.startswith("ERR"):
            code_text, _, message = reply[3:].strip().partition(" ")
            try:
                code = int(code_text)
            except ValueError:
                raise ProtocolError(
                    self.name, f"malformed error reply {reply!r}", command=command
                ) from None
            raise SimCommandError(self.name, code, message or ERROR_CODES.get(code, ""), command)
        return reply

    async def do(self, command: str) -> None:
        """Send a command that must answer ``OK``."""
        reply = await self.ask(command, expect="OK")
        if reply != "OK":
            raise ProtocolError(self.name, f"expected OK, got {reply!r}", command=command)

    async def ask_array(self, command: str, dtype: str) -> np.ndarray:
        """A request answered by a line ``DATA <n> [<d1> ...] <dtype>`` then exactly the bytes
        of an ``(n, d1, ...)`` array of little-endian ``dtype`` (the buffered simulators'
        ``READ``): the array."""
        async with self.exchange() as conn:
            header = self.check(await conn.write_readline(command), command)
            fields = header.split()
            try:
                if len(fields) < 3 or fields[0] != "DATA" or fields[-1] != dtype:
                    raise ValueError
                shape = tuple(int(f) for f in fields[1:-1])
            except ValueError:
                raise ProtocolError(
                    self.name, f"bad READ header {header!r}", command=command
                ) from None
            item = np.dtype(f"<{dtype}")
            size = int(np.prod(shape)) * item.itemsize
            payload = await conn.read(size) if size else b""
        return np.frombuffer(payload, dtype=item).reshape(shape)

    async def ask_numbers(self, command: str, count: int | None = None) -> list[float]:
        reply = await self.ask(command, expect=_NUMBERS_REPLY)
        try:
            values = [float(v) for v in reply.split()]
        except ValueError:
            raise ProtocolError(
                self.name, f"expected numbers, got {reply!r}", command=command
            ) from None
        if count is not None and len(values) != count:
            raise ProtocolError(
                self.name, f"expected {count} number(s), got {reply!r}", command=command
            )
        return values

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
