"""Supervision of child processes the server depends on (the HDF5 writer).

A supervised child is restarted when it dies, with a growing pause if it keeps dying at
start, and is stopped (SIGTERM, then SIGKILL after a deadline) when its owner's scope ends,
so the server never leaves an orphan behind. If the server itself is killed (SIGKILL), the
writer notices that its parent is gone (``--parent-pid``) and exits.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

import anyio
import anyio.abc

log = logging.getLogger("blissng.supervisor")


class Supervised:
    """``await Supervised(name, argv).run()`` in the owner's task group until cancelled."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        stop_timeout: float = 10.0,
        max_backoff: float = 10.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.stop_timeout = stop_timeout
        self.max_backoff = max_backoff
        self.process: anyio.abc.Process | None = None
        self.starts = 0
        self.last_exit: int | None = None
        self.started = anyio.Event()  # set at the first start
        self._restarted: anyio.Event = anyio.Event()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def wait_starts(self, count: int) -> None:
        """Until the child has been started ``count`` times in all."""
        while self.starts < count:
            await self._restarted.wait()

    async def run(self) -> None:
        backoff = 0.0
        try:
            while True:
                started_at = time.monotonic()
                # A session of its own: a Ctrl-C or a signal to the server's process group
                # does not kill the child before the server stops it in order.
                self.process = await anyio.open_process(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=None,
                    stderr=None,
                    start_new_session=True,
                )
                self.starts += 1
                log.info("%s started (pid %d)", self.name, self.process.pid)
                self.started.set()
                self._restarted.set()
                self._restarted = anyio.Event()
                self.last_exit = await self.process.wait()
                log.error("%s exited with code %s; restarting", self.name, self.last_exit)
                # A child that dies at once again and again: wait longer between tries.
                backoff = (
                    0.5
                    if time.monotonic() - started_at > 30
                    else min(self.max_backoff, backoff * 2)
                )
                await anyio.sleep(backoff if self.starts > 1 else 0.0)
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop()

    async def _stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        with anyio.move_on_after(self.stop_timeout):
            await process.wait()
            return
        log.warning("%s did not stop within %.0f s: killing it", self.name, self.stop_timeout)
        process.kill()
        await process.wait()


def writer_command(redis_url: str) -> list[str]:
    """The writer as a child of this interpreter (``python -m blissng.writer``)."""
    parent = str(os.getpid())
    return [sys.executable, "-m", "blissng.writer", "--redis", redis_url, "--parent-pid", parent]
