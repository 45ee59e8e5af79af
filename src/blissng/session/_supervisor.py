"""Supervision of child processes the server depends on (the HDF5 writer).

A supervised child is restarted when it dies, after a pause that doubles (0.5 s up to
``max_backoff``) while it keeps dying soon after its start (a child that cannot work, e.g.
its Redis is gone, is not restarted 50 times a minute), and is stopped (SIGTERM, then SIGKILL
after a deadline) when its owner's scope ends, so the server never leaves an orphan behind.
A child that cannot even be started (no file descriptor or memory left) is retried the same
way: supervision never ends the server. If the server itself is killed (SIGKILL), the writer
notices that its parent is gone (``--parent-pid``) and exits.

What the child prints is relayed line by line to the server's log (logger
``blissng.<name>.output``, records marked ``relayed``: the line is already formatted), not
written to the server's terminal behind its back: a console shown on that terminal keeps
its prompt below the lines.
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

from ._keeper import Backoff

log = logging.getLogger("blissng.supervisor")


async def _relay(stream: anyio.abc.ByteReceiveStream | None, name: str) -> None:
    """Log each line the child prints (until its end of file)."""
    if stream is None:
        return
    output = logging.getLogger(f"blissng.{name}.output")
    pending = b""
    async for chunk in stream:
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            output.info("%s", line.decode(errors="replace"), extra={"relayed": True})
    if pending:
        output.info("%s", pending.decode(errors="replace"), extra={"relayed": True})


class Supervised:
    """``await Supervised(name, argv).run()`` in the owner's task group until cancelled."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        stop_timeout: float = 10.0,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        healthy_after: float = 30.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.stop_timeout = stop_timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.healthy_after = healthy_after
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
        backoff = Backoff(self.min_backoff, self.max_backoff)
        try:
            while True:
                started_at = time.monotonic()
                try:
                    # A session of its own: a Ctrl-C or a signal to the server's process
                    # group does not kill the child before the server stops it in order.
                    self.process = await anyio.open_process(
                        self.argv,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                except OSError as exc:  # EMFILE, ENOMEM, EAGAIN: retried, not fatal
                    pause = backoff.next()
                    log.error(
                        "%s could not be started (%s); trying again in %.1f s",
                        self.name,
                        exc,
                        pause,
                    )
                    await anyio.sleep(pause)
                    continue
                self.starts += 1
                log.info("%s started (pid %d)", self.name, self.process.pid)
                self.started.set()
                self._restarted.set()
                self._restarted = anyio.Event()
                async with anyio.create_task_group() as relaying:
                    relaying.start_soon(_relay, self.process.stdout, self.name)
                    self.last_exit = await self.process.wait()
                if time.monotonic() - started_at > self.healthy_after:
                    backoff.reset()  # it worked for a while: restart it soon
                pause = backoff.next()
                log.error(
                    "%s exited with code %s; restarting it in %.1f s",
                    self.name,
                    self.last_exit,
                    pause,
                )
                await anyio.sleep(pause)
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop()

    async def _stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        with anyio.move_on_after(self.stop_timeout):
            async with anyio.create_task_group() as relaying:  # its last words too
                relaying.start_soon(_relay, process.stdout, self.name)
                await process.wait()
            return
        log.warning("%s did not stop within %.0f s: killing it", self.name, self.stop_timeout)
        process.kill()
        await process.wait()


def writer_command(redis_url: str) -> list[str]:
    """The writer as a child of this interpreter (``python -m blissng.writer``)."""
    parent = str(os.getpid())
    return [sys.executable, "-m", "blissng.writer", "--redis", redis_url, "--parent-pid", parent]
