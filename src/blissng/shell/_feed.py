"""A console's terminal output: one append-only stream, a scrollback, many readers.

A console outlives the websockets attached to it (a page reload must not abort a scan), so its
output is not pushed to a socket but appended here. Each attached tab reads from its own
position; a tab that attaches later starts at the beginning of the scrollback, which replays
the console's history. Writers may be worker threads (user code printing), readers are tasks
on the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable

import anyio

DEFAULT_SCROLLBACK = 512 * 1024  # characters kept for replay


class TerminalFeed:
    """Thread-safe append-only text with a bounded scrollback and async readers.

    Positions are absolute character offsets since the console started; ``read(pos)`` returns
    what was written since ``pos`` (or since the start of the scrollback if ``pos`` fell out).
    """

    def __init__(self, scrollback: int = DEFAULT_SCROLLBACK) -> None:
        self._scrollback = scrollback
        self._lock = threading.Lock()
        self._chunks: deque[str] = deque()
        self._start = 0  # absolute offset of the first kept chunk
        self._end = 0
        self._closed = False
        self._event = anyio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake_pending = False

    def bind_loop(self) -> None:
        """Call once from the event loop that reads this feed."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    @property
    def end(self) -> int:
        return self._end

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, text: str) -> None:
        """Append terminal text (``\\n`` becomes ``\\r\\n``); callable from any thread."""
        if not text:
            return
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
        with self._lock:
            self._chunks.append(text)
            self._end += len(text)
            while self._end - self._start > self._scrollback and len(self._chunks) > 1:
                self._start += len(self._chunks.popleft())
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            self._schedule_wake()

    def poke(self) -> None:
        """Wake the readers without writing (something else they watch changed)."""
        with self._lock:
            if self._wake_pending:
                return
            self._wake_pending = True
        self._schedule_wake()

    def activity(self) -> anyio.Event:
        """The event the next write, poke or close sets: take it *before* reading, so that
        nothing written after the read goes unnoticed."""
        with self._lock:
            return self._event

    def close(self) -> None:
        self._closed = True
        with self._lock:
            self._wake_pending = True
        self._schedule_wake()

    def call_on_loop(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` on the loop that reads this feed, from any thread: at once on that
        loop's thread (or before a loop is bound), else scheduled there."""
        if self._loop is None or threading.get_ident() == self._loop_thread:
            callback()
        else:
            try:  # never block the writing thread: just schedule the call
                self._loop.call_soon_threadsafe(callback)
            except RuntimeError:  # the loop is closed: nobody is reading any more
                pass

    def _schedule_wake(self) -> None:
        self.call_on_loop(self._wake)

    def _wake(self) -> None:
        with self._lock:
            self._wake_pending = False
            event, self._event = self._event, anyio.Event()
        event.set()

    def read(self, position: int) -> tuple[str, int]:
        """Text written since ``position`` and the new position (never blocks).

        Walks back from the newest chunk: a reader that keeps up reads one or two chunks,
        whatever the scrollback holds (each keystroke's redraw is a chunk: walking from the
        oldest cost every echo thousands of steps once the scrollback had filled up)."""
        with self._lock:
            if position >= self._end:
                return "", self._end
            position = max(position, self._start)
            offset = self._end
            parts: list[str] = []
            for chunk in reversed(self._chunks):
                offset -= len(chunk)
                if offset <= position:
                    parts.append(chunk[position - offset :])
                    break
                parts.append(chunk)
            parts.reverse()
            return "".join(parts), self._end

    def replay_start(self) -> int:
        """Where a newly attached reader starts: the oldest kept line boundary."""
        with self._lock:
            if self._start == 0 or not self._chunks:
                return self._start
            offset = self._start
            for chunk in self._chunks:
                index = chunk.find("\n")
                if index >= 0:
                    return offset + index + 1
                offset += len(chunk)
            return self._start

    async def wait_beyond(self, position: int) -> None:
        """Return once something was written after ``position`` (or the feed closed)."""
        while True:
            with self._lock:
                if self._end > position or self._closed:
                    return
                event = self._event
            await event.wait()
