"""The log file of a session: every command typed in its consoles and what it printed.

Writes come from the event loop and from worker threads; the file is written by a task of the
session's consoles in a worker thread (file I/O never runs on the event loop), in batches.

The log is a record, not a reason to stop: a file that cannot be written (a full disk, a
read-only or immutable file, no file descriptor left) is reported once in the server's log,
its text is kept in memory (bounded, oldest dropped first and counted) and written when the
file can be written again, retried every ``RETRY_PERIOD`` seconds. The consoles go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import re
import threading
from pathlib import Path

import anyio

from blissng.threads import run_in_thread

log = logging.getLogger("blissng.shell")

RETRY_PERIOD = 5.0  # seconds between two attempts at a log file that could not be written
MAX_PENDING = 1024 * 1024  # characters kept in memory while the file cannot be written

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r(?!\n)")


def strip_ansi(text: str) -> str:
    """Terminal text without colour/cursor sequences (for a readable log)."""
    return _ANSI.sub("", text)


class SessionLog:
    """Append-only, batched log of a session's commands and output."""

    def __init__(self, path: Path, *, max_pending: int = MAX_PENDING) -> None:
        self.path = path
        self.max_pending = max_pending
        self.error: OSError | None = None
        """Why the file cannot be written now (None when it can)."""
        self.lost = 0
        """Characters dropped (oldest first) while the file could not be written."""
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._pending_size = 0
        self._retry_at = 0.0
        # Set when text arrives (from any thread) while run() waits for some: a session at
        # rest wakes nothing.
        self._ready = anyio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    def command(self, console_id: str, text: str) -> None:
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        lines = text.splitlines() or [""]
        body = "\n".join(
            [f"{stamp} [{console_id}] >>> {lines[0]}"] + [f"... {x}" for x in lines[1:]]
        )
        self._append(body + "\n")

    def output(self, text: str) -> None:
        self._append(strip_ansi(text))

    def _append(self, text: str) -> None:
        with self._lock:
            first = not self._pending
            self._pending.append(text)
            self._pending_size += len(text)
            self._bound()
        if first:
            self._signal()

    def _signal(self) -> None:
        """Wake run() (from the loop's thread or any other)."""
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._ready.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to wake
                loop.call_soon_threadsafe(self._ready.set)

    def _bound(self) -> None:
        """Drop the oldest pending text beyond ``max_pending`` characters (lock held)."""
        while self._pending_size > self.max_pending and self._pending:
            excess = self._pending_size - self.max_pending
            first = self._pending[0]
            if len(first) <= excess:
                self._pending.pop(0)
                cut = len(first)
            else:
                self._pending[0] = first[excess:]
                cut = excess
            self._pending_size -= cut
            self.lost += cut

    def _take(self) -> str:
        with self._lock:
            text = "".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
        return text

    def _put_back(self, text: str) -> None:
        """Text that could not be written goes back in front of what came since."""
        with self._lock:
            self._pending.insert(0, text)
            self._pending_size += len(text)
            self._bound()

    def _write(self, data: bytes) -> int:
        """Append ``data``; the number of bytes written before an error (in the error's
        ``written`` attribute), so that a retry never writes a part twice."""
        written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                while written < len(data):
                    written += os.write(fd, data[written:])
            finally:
                os.close(fd)
        except OSError as exc:
            exc.written = written  # type: ignore[attr-defined]
            raise
        return written

    async def flush(self, *, force: bool = False) -> None:
        """Write what is pending; a file that cannot be written is retried later (at once
        with ``force``, the last flush)."""
        if self.error is not None and not force and anyio.current_time() < self._retry_at:
            return
        text = self._take()
        if not text:
            return
        lost = self.lost
        gap = ""
        if lost:
            why = f": {self.error}" if self.error is not None else ""
            gap = f"\n[... {lost} characters of this log were lost{why}]\n"
        data = (gap + text).encode("utf-8", errors="replace")
        try:
            await run_in_thread(self._write, data)
        except OSError as exc:
            written = getattr(exc, "written", 0)
            if written >= len(gap.encode()):  # the gap note (and part of the text) is in
                self.lost -= lost  # the file: neither is written twice
                text = data[written:].decode("utf-8", errors="replace")
            self._put_back(text)
            self._retry_at = anyio.current_time() + RETRY_PERIOD
            if self.error is None:
                log.warning(
                    "session log %s cannot be written (%s): its text is kept in memory (up to "
                    "%d characters) and written once it can be; retrying every %.0f s",
                    self.path,
                    exc,
                    self.max_pending,
                    RETRY_PERIOD,
                )
            self.error = exc
            return
        self.lost -= lost
        if self.error is not None:
            log.warning("session log %s is written again", self.path)
            self.error = None

    async def run(self, period: float = 0.2) -> None:
        """Write pending text at most every ``period`` seconds, when there is some, until
        cancelled (then a last flush); a file that cannot be written is retried."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        try:
            while True:
                if not self._pending:
                    await self._ready.wait()
                self._ready = anyio.Event()
                await anyio.sleep(period)  # what comes meanwhile goes in the same write
                await self.flush()
                if self.error is not None:
                    await anyio.sleep(max(0.0, self._retry_at - anyio.current_time()))
        finally:
            with anyio.CancelScope(shield=True):
                await self.flush(force=True)
