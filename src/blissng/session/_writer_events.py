"""Writer errors reach the session that ran the scan.

The writer is another process: when it cannot write a scan (disk full, read-only file
system), it says so on the stream ``blissng:writer:events`` with the scan's session. The
server follows that stream and prints each message in the session's output, where the
scientist who ran the scan sees it in every console of that session.

The data Redis may restart or be unreachable for a while (decision 0002: scans ride it out):
the follower then waits and reconnects with a growing pause, says so once in the server's
log, and goes on from the last event it read. It never ends the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import anyio.abc
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from blissng.redisdb import async_client
from blissng.writer import EVENTS_STREAM

from ._keeper import Backoff

log = logging.getLogger("blissng.session")


class Output(Protocol):
    def write(self, text: str) -> int: ...


async def report_writer_events(
    data_url: str,
    output_of: Callable[[str], Output | None],
    *,
    since: str = "$",
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Forward writer events to ``output_of(session)`` until cancelled.

    With ``await tg.start(...)``, returns once the events from then on are sure to be seen.
    """
    client: Any = async_client(data_url)  # redis-py types replies loosely
    last = since
    backoff = Backoff(0.1, 5.0)
    away: str | None = None  # the connection error while the data Redis is away
    try:
        if last == "$":
            newest = await client.xrevrange(EVENTS_STREAM, "+", "-", count=1)
            last = newest[0][0].decode() if newest else "0-0"
        task_status.started()
        while True:
            try:
                found = await client.xread({EVENTS_STREAM: last}, block=1000, count=100)
            except (OSError, RedisConnectionError, RedisTimeoutError) as exc:
                if away is None:
                    log.warning(
                        "writer events: the data Redis is unreachable (%s); reconnecting", exc
                    )
                away = str(exc)
                await anyio.sleep(backoff.next())
                continue
            if away is not None:
                log.info("writer events: the data Redis is reachable again")
                away = None
                backoff.reset()
            for _key, entries in found:
                for entry_id, fields in entries:
                    last = entry_id.decode()
                    _forward(fields, output_of)
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()


def _forward(fields: dict[bytes, bytes], output_of: Callable[[str], Output | None]) -> None:
    session = fields.get(b"session", b"").decode()
    message = fields.get(b"message", b"").decode()
    output = output_of(session)
    if output is None:
        log.warning("writer (session %r): %s", session, message)
        return
    output.write(
        f"\n!!! {message}\n!!! the data stays in Redis; "
        "the writer retries once the cause is fixed\n"
    )
