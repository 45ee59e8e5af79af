"""The event-loop monitor: measures how long the loop takes to answer, names what held it.

A thread of the monitor pings the event loop every ``interval`` seconds
(``loop.call_soon_threadsafe``) and measures the latency until the ping runs. While a ping is
late by more than ``threshold``, the stall is still going on, so the thread takes the stack of
the loop's thread at that moment (``sys._current_frames()``): the innermost frame is the code
that holds the loop (a ``time.sleep``, an ``os.statvfs`` on a dead NFS mount, a CPU-bound
decode). When the ping finally runs, the stall is logged (logger ``blissng.health``) with that
stack and kept in bounded statistics.

This answers walls #1 and #2 of the design: blocking calls and hogging reading loops are found
by their stack, not guessed.

    async with loop_monitor(threshold=0.02) as monitor:
        ...
    print(monitor.stats())      # or loop_stats() from the shell
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import heapq
import itertools
import logging
import sys
import threading
import time
import traceback
from types import FrameType, TracebackType
from typing import Any

log = logging.getLogger("blissng.health")

#: Frames of these files are the event loop's own machinery, not a culprit.
_MACHINERY = ("asyncio/", "anyio/_backends/", "selectors.py", "threading.py")


def _is_sleep_wrapper(frame: FrameInfo) -> bool:
    """True for a frame of a Python function that replaced ``time.sleep`` (a console makes
    ``time.sleep`` interruptible process-wide): the culprit is its caller, as it would be with
    the builtin ``time.sleep`` (a C function, without a frame of its own)."""
    code = getattr(time.sleep, "__code__", None)
    return (
        code is not None and frame.function == code.co_name and frame.filename == code.co_filename
    )


@dataclasses.dataclass(frozen=True)
class FrameInfo:
    """One frame of a captured stack."""

    filename: str
    lineno: int
    function: str
    line: str = ""

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno} in {self.function}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Stall:
    """The loop did not answer for ``duration`` seconds; ``stack`` was taken during it."""

    duration: float
    at: float  # time.time() when the stall was detected
    stack: tuple[FrameInfo, ...]  # outermost first

    @property
    def culprit(self) -> FrameInfo | None:
        """The innermost frame of the stack: the code that held the loop."""
        for frame in reversed(self.stack):
            if not any(part in frame.filename for part in _MACHINERY) and not _is_sleep_wrapper(
                frame
            ):
                return frame
        return self.stack[-1] if self.stack else None

    def describe(self, frames: int = 8) -> str:
        culprit = self.culprit
        head = f"event loop stalled for {self.duration * 1e3:.1f} ms"
        if culprit is None:
            # The monitor's own thread was held as long as the loop: not one piece of code on
            # the loop but the whole process (a thread holding the GIL, or the OS scheduler).
            return head + " (no stack: the whole process was held, by the GIL or the OS)"
        lines = [f"{head} in {culprit.function} ({culprit.filename}:{culprit.lineno})"]
        lines += [f"    {frame}" for frame in self.stack[-frames:]]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        culprit = self.culprit
        return {
            "duration": self.duration,
            "at": self.at,
            "culprit": str(culprit) if culprit else None,
            "function": culprit.function if culprit else None,
            "stack": [str(frame) for frame in self.stack],
        }


@dataclasses.dataclass(frozen=True)
class LoopStats:
    """Ping latencies (seconds) and the worst stalls, worst first."""

    count: int
    max: float
    p50: float
    p99: float
    mean: float
    threshold: float
    stall_count: int
    stalls: tuple[Stall, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "max": self.max,
            "p50": self.p50,
            "p99": self.p99,
            "mean": self.mean,
            "threshold": self.threshold,
            "stall_count": self.stall_count,
            "stalls": [stall.to_dict() for stall in self.stalls],
        }

    def __info__(self) -> str:
        """What the shell prints when ``loop_stats()`` is evaluated at the prompt."""
        return str(self)

    def __str__(self) -> str:
        lines = [
            f"event loop: {self.count} pings, latency p50 {self.p50 * 1e3:.2f} ms, "
            f"p99 {self.p99 * 1e3:.2f} ms, max {self.max * 1e3:.2f} ms; "
            f"{self.stall_count} stalls over {self.threshold * 1e3:.0f} ms"
        ]
        for stall in self.stalls:
            culprit = stall.culprit
            lines.append(f"  {stall.duration * 1e3:8.1f} ms  {culprit or '(no stack)'}")
        return "\n".join(lines)


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def _capture(frame: FrameType | None, limit: int = 40) -> tuple[FrameInfo, ...]:
    if frame is None:
        return ()
    summary = traceback.extract_stack(frame, limit=limit)
    return tuple(
        FrameInfo(f.filename, f.lineno or 0, f.name, (f.line or "").strip()) for f in summary
    )


class LoopMonitor:
    """Pings the running event loop from a thread; records latencies and stalls.

    ``threshold``: latency above which a ping counts as a stall (its stack is captured).
    ``interval``: time between pings. ``keep_samples``: latencies kept for percentiles;
    ``keep_stalls``: worst stalls kept. Start it from the loop it watches (``async with``, or
    :meth:`start` from inside the loop); :meth:`stop` joins the thread.
    """

    def __init__(
        self,
        threshold: float = 0.05,
        *,
        interval: float = 0.01,
        keep_samples: int = 10_000,
        keep_stalls: int = 20,
        log_stalls: bool = True,
    ) -> None:
        if threshold <= 0 or interval <= 0:
            raise ValueError("LoopMonitor: threshold and interval must be > 0 seconds")
        self.threshold = threshold
        self.interval = interval
        self.keep_stalls = keep_stalls
        self.log_stalls = log_stalls
        self._samples: collections.deque[float] = collections.deque(maxlen=keep_samples)
        self._max = 0.0
        self._count = 0
        self._sum = 0.0
        self._stalls: list[tuple[float, int, Stall]] = []  # min-heap of the worst
        self._stall_count = 0
        self._serial = itertools.count()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id = 0

    # -- life ---------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start watching the running loop (call from inside it)."""
        if self.running:
            raise RuntimeError("this loop monitor is already running")
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "LoopMonitor.start() must be called from the asyncio event loop it watches"
            ) from None
        self._loop_thread_id = threading.get_ident()
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._watch, name="blissng-loop-monitor", daemon=True
        )
        self._thread.start()
        _register(self)

    def stop(self) -> None:
        """Stop pinging; returns once the thread has finished (within ``interval``)."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    async def __aenter__(self) -> LoopMonitor:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        import anyio

        self._stopping.set()
        thread = self._thread
        if thread is not None:
            # join in a thread: the loop keeps running, so a pending ping is answered
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(thread.join)
        self._thread = None

    # -- figures ------------------------------------------------------------------------------
    def stats(self) -> LoopStats:
        with self._lock:
            ordered = sorted(self._samples)
            worst = sorted((entry[2] for entry in self._stalls), key=lambda s: -s.duration)
            return LoopStats(
                count=self._count,
                max=self._max,
                p50=_percentile(ordered, 0.50),
                p99=_percentile(ordered, 0.99),
                mean=self._sum / self._count if self._count else 0.0,
                threshold=self.threshold,
                stall_count=self._stall_count,
                stalls=tuple(worst),
            )

    def reset(self) -> None:
        with self._lock:
            self._samples.clear()
            self._max = self._sum = 0.0
            self._count = self._stall_count = 0
            self._stalls.clear()

    # -- the thread ---------------------------------------------------------------------------
    def _watch(self) -> None:
        loop = self._loop
        assert loop is not None
        while not self._stopping.wait(self.interval):
            answered = threading.Event()
            answer: list[float] = []

            def pong(answered: threading.Event = answered, answer: list[float] = answer) -> None:
                answer.append(time.perf_counter())
                answered.set()

            sent = time.perf_counter()
            try:
                loop.call_soon_threadsafe(pong)
            except RuntimeError:  # the loop is closed
                return
            stack: tuple[FrameInfo, ...] = ()
            if not answered.wait(self.threshold):
                # The loop is held right now: whoever holds it is on top of its stack.
                stack = _capture(sys._current_frames().get(self._loop_thread_id))
                while not answered.wait(0.05):
                    if self._stopping.is_set() or loop.is_closed():
                        break
            latency = (answer[0] if answer else time.perf_counter()) - sent
            self._record(latency, stack)

    def _record(self, latency: float, stack: tuple[FrameInfo, ...]) -> None:
        stall = None
        with self._lock:
            self._samples.append(latency)
            self._count += 1
            self._sum += latency
            self._max = max(self._max, latency)
            if latency > self.threshold:
                stall = Stall(duration=latency, at=time.time(), stack=stack)
                self._stall_count += 1
                entry = (latency, next(self._serial), stall)
                if len(self._stalls) < self.keep_stalls:
                    heapq.heappush(self._stalls, entry)
                elif latency > self._stalls[0][0]:
                    heapq.heapreplace(self._stalls, entry)
        if stall is not None and self.log_stalls:
            log.warning("%s", stall.describe())


# -- the process's monitors (for loop_stats() at the shell) ----------------------------------
_recent: list[LoopMonitor] = []


def _register(monitor: LoopMonitor) -> None:
    if monitor in _recent:
        _recent.remove(monitor)
    _recent.append(monitor)
    del _recent[:-8]


def current_monitor() -> LoopMonitor | None:
    """The most recently started monitor that is still running, else the most recent one."""
    for monitor in reversed(_recent):
        if monitor.running:
            return monitor
    return _recent[-1] if _recent else None


def loop_stats() -> LoopStats | None:
    """The figures of :func:`current_monitor` (None if no monitor was ever started)."""
    monitor = current_monitor()
    return monitor.stats() if monitor is not None else None


def loop_monitor(threshold: float = 0.05, *, interval: float = 0.01, **kwargs: Any) -> LoopMonitor:
    """``async with loop_monitor(threshold=0.02) as monitor:`` watches the loop meanwhile."""
    return LoopMonitor(threshold, interval=interval, **kwargs)
