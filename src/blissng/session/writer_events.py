"""Writer errors reach the session that ran the scan.

The writer is another process: when it cannot write a scan (disk full, read-only file
system), it says so on the stream ``blissng:writer:events`` with the scan's session. The
server follows that stream and prints each message in the session's output, where the
scientist who ran the scan sees it in every console of that session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import anyio.abc

from blissng.redisdb import async_client
from blissng.writer import EVENTS_STREAM

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
    try:
        if last == "$":
            newest = await client.xrevrange(EVENTS_STREAM, "+", "-", count=1)
            last = newest[0][0].decode() if newest else "0-0"
        task_status.started()
        while True:
            found = await client.xread({EVENTS_STREAM: last}, block=1000, count=100)
            for _key, entries in found:
                for entry_id, fields in entries:
                    last = entry_id.decode()
                    session = fields.get(b"session", b"").decode()
                    message = fields.get(b"message", b"").decode()
                    output = output_of(session)
                    if output is None:
                        log.warning("writer (session %r): %s", session, message)
                        continue
                    output.write(
                        f"\n!!! {message}\n!!! the data stays in Redis; "
                        "the writer retries once the cause is fixed\n"
                    )
    finally:
        await client.aclose()
