"""Where the event loop is: waiting in its selector, or running callbacks since when.

asyncio's selector loop calls ``selector.select(timeout)`` once per iteration: between two
calls it runs the ready callbacks, and a callback that does not return is a stall. Wrapping
that one method tells the loop monitor, from its own thread, whether the loop is waiting
(nothing to blame) or how long it has been busy, without waking the loop ever: a monitor
that pinged the loop every 10 ms cost a sleeping server most of its idle CPU, and a late
ping could not tell a busy loop from a process the OS did not schedule.

Per iteration the loop reads the clock twice; only an iteration longer than the threshold
does more (it notes its start and length, and where the loop thread's time went).

Where the time went: Linux counts, per thread, the time spent on a CPU and the time spent
runnable but waiting for one (``/proc/<pid>/task/<tid>/schedstat``). A stall during which the
loop thread mostly waited for a CPU is the machine's (other processes), not the code's; one
during which it ran, or slept in a call (``time.sleep``, a hung ``statvfs``), is the code's.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import threading
import time
from typing import Any

_NOT_BUSY = 0.0


@dataclasses.dataclass(frozen=True)
class ThreadTimes:
    """A thread's scheduler figures at ``wall`` (``perf_counter``): seconds spent on a CPU,
    and runnable but waiting for one; and the CPU seconds of the whole process."""

    wall: float
    on_cpu: float
    waiting_cpu: float
    process_cpu: float


class SchedStat:
    """The scheduler figures of one thread, readable from any thread (None off Linux)."""

    def __init__(self, native_id: int) -> None:
        self._fd: int | None = None
        with contextlib.suppress(OSError):
            self._fd = os.open(f"/proc/self/task/{native_id}/schedstat", os.O_RDONLY)

    def read(self) -> ThreadTimes | None:
        if self._fd is None:
            return None
        try:
            on_cpu, waiting, _ = os.pread(self._fd, 128, 0).split(maxsplit=2)
        except (OSError, ValueError):
            return None
        return ThreadTimes(
            time.perf_counter(), int(on_cpu) / 1e9, int(waiting) / 1e9, time.process_time()
        )

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


@dataclasses.dataclass(frozen=True)
class LongIteration:
    """One run of callbacks longer than the threshold: from ``start`` (``perf_counter``) for
    ``duration`` s; ``end``: the loop thread's figures when it ended."""

    start: float
    duration: float
    end: ThreadTimes | None


class IterationProbe:
    """Installed on a loop's selector for as long as a monitor watches it."""

    def __init__(self, selector: Any, threshold: float) -> None:
        """Install on ``selector``; call from the loop's thread, while it runs a callback."""
        self.selector = selector
        self.threshold = threshold
        self.sched = SchedStat(threading.get_native_id())
        self.busy_since = time.perf_counter()
        """``perf_counter()`` when the loop left its selector; 0.0 while it waits in it."""
        self.longest = 0.0
        self.long: collections.deque[LongIteration] = collections.deque(maxlen=1000)
        self._select = selector.select
        self._installed = True
        selector.select = self.select

    def select(self, timeout: float | None = None) -> Any:
        since = self.busy_since
        if since:
            busy = time.perf_counter() - since
            if busy > self.longest:
                self.longest = busy
            if busy > self.threshold:
                self.long.append(LongIteration(since, busy, self.sched.read()))
            self.busy_since = _NOT_BUSY
        try:
            return self._select(timeout)
        finally:
            self.busy_since = time.perf_counter()

    def remove(self) -> None:
        """Put the selector back (a probe installed after this one stays, passing through)."""
        if not self._installed:
            return
        self._installed = False
        self.sched.close()
        if self.selector.select == self.select:
            self.selector.select = self._select
        else:  # another probe wraps this one: become transparent
            self.threshold = float("inf")
