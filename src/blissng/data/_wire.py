"""The publisher's own Redis connection: one write per pipeline, replies read in order.

redis-py's per-command packing cost more than the rest of the publisher, so a flush is
encoded here (RESP, payloads passed through without a copy) and sent on a connection the
publisher alone uses: a restarted Redis then always shows as an error on it, and on the
reconnection the scan's existence is checked BEFORE any data goes (else new entries could
reach an empty Redis ahead of the older ones a restore puts back, and a live reader would see
a gap). Why: docs/decisions/0003-publisher-wire-encoding.md.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import redis.asyncio as aredis
from redis.exceptions import OutOfMemoryError, ResponseError

from ._errors import DataError

Command = tuple[bytes | str | int, ...]


class ScanLost(DataError):
    """Redis no longer has the scan (a restart, a flush): restore it from memory."""


class PipelineConnection:
    """``await connection.execute(commands)``: the replies in order, a ``ResponseError``
    instance for a command Redis refused; a lost connection raises (an ``OSError``)."""

    def __init__(self, client: aredis.Redis, scan_key: str, timeout: float) -> None:
        self.client = client
        self.scan_key = scan_key
        self.timeout = timeout
        self.created = False
        """Once the scan exists, a reconnection first checks it still does (:class:`ScanLost`)."""
        self._connection: Any = None

    async def execute(self, commands: list[Command]) -> list[Any]:
        connection = self._connection
        if connection is None:
            pool = self.client.connection_pool
            connection = self._connection = pool.connection_class(**pool.connection_kwargs)
        try:
            if not connection.is_connected:
                await connection.connect()
                if self.created:
                    await connection.send_packed_command(
                        pack([(b"EXISTS", self.scan_key)]), check_health=False
                    )
                    if not await connection.read_response(disable_decoding=True):
                        raise ScanLost
            await connection.send_packed_command(pack(commands), check_health=False)
            results: list[Any] = []
            # One deadline for the whole pipeline (a per-reply timeout costs more than the
            # reply); a TimeoutError is an OSError: a lost connection for the retry.
            with anyio.fail_after(self.timeout):
                for _ in commands:
                    try:
                        results.append(
                            await connection.read_response(disable_decoding=True, timeout=math.inf)
                        )
                    except ResponseError as exc:
                        results.append(exc)
        except BaseException as exc:
            if not isinstance(exc, ScanLost):
                with anyio.CancelScope(shield=True):
                    await connection.disconnect()
            raise
        return results

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with anyio.CancelScope(shield=True):
                await connection.disconnect()


def pack(commands: list[Command]) -> list[bytes]:
    """RESP encoding of a pipeline; payloads are passed through without a copy."""
    out: list[bytes] = []
    head = bytearray()
    for command in commands:
        head += b"*%d\r\n" % len(command)
        for arg in command:
            if isinstance(arg, bytes):
                value = arg
            elif isinstance(arg, str):
                value = arg.encode()
            else:
                value = b"%d" % arg
            head += b"$%d\r\n" % len(value)
            if len(value) > 4096:
                out.append(bytes(head))
                out.append(value)
                head = bytearray(b"\r\n")
            else:
                head += value
                head += b"\r\n"
    out.append(bytes(head))
    return out


def is_duplicate(error: Exception) -> bool:
    """An XADD of an ID already in the stream: that entry arrived before (a retry)."""
    return "equal or smaller than the target stream top item" in str(error)


def is_oom(error: Exception) -> bool:
    return isinstance(error, OutOfMemoryError) or str(error).startswith("OOM")
