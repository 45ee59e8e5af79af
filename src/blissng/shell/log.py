"""The log file of a session: every command typed in its consoles and what it printed.

Writes come from the event loop and from worker threads; the file is written by a task of the
session's consoles in a worker thread (file I/O never runs on the event loop), in batches.
"""

from __future__ import annotations

import datetime
import re
import threading
from pathlib import Path

import anyio
import anyio.to_thread

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r(?!\n)")


def strip_ansi(text: str) -> str:
    """Terminal text without colour/cursor sequences (for a readable log)."""
    return _ANSI.sub("", text)


class SessionLog:
    """Append-only, batched log of a session's commands and output."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._wake = threading.Event()

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
            self._pending.append(text)
        self._wake.set()

    def _take(self) -> str:
        with self._lock:
            text = "".join(self._pending)
            self._pending.clear()
        return text

    def _write(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(text)

    async def flush(self) -> None:
        text = self._take()
        if text:
            await anyio.to_thread.run_sync(self._write, text)

    async def run(self, period: float = 0.2) -> None:
        """Write pending text every ``period`` seconds until cancelled (then a last flush)."""
        try:
            while True:
                await anyio.sleep(period)
                await self.flush()
        finally:
            with anyio.CancelScope(shield=True):
                await self.flush()
