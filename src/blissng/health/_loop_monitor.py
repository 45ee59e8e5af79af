"""The event-loop monitor: how long the loop's iterations take, and what held it when too long.

asyncio's loop alternates between waiting in its selector and running the ready callbacks. An
:class:`~blissng.health._iterations.IterationProbe` on the selector tells a thread of the
monitor, every ``interval`` seconds, whether the loop waits or since when it runs callbacks
(the loop is never woken for it, so a server at rest stays at rest). While an iteration lasts
longer than ``threshold``, the stall is going on, so the thread takes the stack of the loop's
thread at that moment (``sys._current_frames()``): the innermost frame is the code that holds
the loop (a ``time.sleep``, an ``os.statvfs`` on a dead NFS mount, a CPU-bound decode). When
the iteration ends, the stall is logged (logger ``blissng.health``) with that stack and kept
in bounded statistics.

A stall is the code's only if the loop thread ran, or slept in a call, during it: when it
mostly waited for a CPU (a loaded machine, from the scheduler's own counts), the report says
so and blames no code (logged at INFO, counted apart in ``machine_stall_count``).

This answers walls #1 and #2 of the design: blocking calls and hogging reading loops are found
by their stack, not guessed.

    async with loop_monitor(threshold=0.02) as monitor:
        ...
    print(monitor.stats())      # or loop_stats() from the shell

One module of ~520 lines because the probe's thread, the stall's stack and the blame
(code or machine) are one measurement whose parts only make sense together.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import heapq
import itertools
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from types import FrameType, TracebackType
from typing import Any

from ._iterations import IterationProbe, LongIteration, ThreadTimes

log = logging.getLogger("blissng.health")

# The builtin, taken before a console makes ``time.sleep`` interruptible for user code.
_sleep = time.sleep

#: Frames of these files are the event loop's own machinery, not a culprit.
_MACHINERY = (
    "asyncio/",
    "anyio/_backends/",
    "anyio/_core/_eventloop.py",
    "selectors.py",
    "threading.py",
)


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
    """The loop did not answer for ``duration`` seconds; ``stack`` was taken during it.

    ``waiting_cpu``: the part of the stall (0..1, as observed) its thread spent runnable but
    without a CPU; None when unknown (too short to tell, or not Linux). ``machine``: without
    that wait the loop would not have stalled (the code ran, or slept in calls, less than the
    threshold): a loaded machine's stall, no code to blame.
    """

    duration: float
    at: float  # time.time() when the stall was detected
    stack: tuple[FrameInfo, ...]  # outermost first
    waiting_cpu: float | None = None
    machine: bool = False
    others_cpu: float | None = None
    """The part of the stall the process's other threads ran (holding the GIL, maybe)."""
    expected: str = ""
    """Why the code held the loop on purpose (:func:`expected_stall`); empty otherwise."""

    @property
    def culprit(self) -> FrameInfo | None:
        """The innermost frame of the stack: the code that held the loop (None for a stall
        of the machine, or when the loop was seen waiting in its selector)."""
        if self.machine:
            return None
        for frame in reversed(self.stack):
            if not any(part in frame.filename for part in _MACHINERY) and not _is_sleep_wrapper(
                frame
            ):
                return frame
        return None

    def describe(self, frames: int = 8) -> str:
        culprit = self.culprit
        head = f"event loop stalled for {self.duration * 1e3:.1f} ms"
        if self.expected:
            return f"event loop held for {self.duration * 1e3:.1f} ms on purpose: {self.expected}"
        if self.machine:
            return head + (
                f": its thread waited for a CPU {self.waiting_cpu or 0:.0%} of the time (the "
                f"machine is loaded: load average {os.getloadavg()[0]:.1f} on "
                f"{os.cpu_count()} CPUs), not held by code"
            )
        if culprit is None:
            if not self.stack:
                return head + " (it ended before the monitor looked: no stack)"
            others = ""
            if self.others_cpu is not None and self.others_cpu >= 0.5:
                others = f"; other threads of the process ran {self.others_cpu:.0%} of it"
            return head + (
                " between callbacks: the loop ran none of our code (held by another thread "
                f"holding the GIL, or by the OS{others})"
            )
        if self.waiting_cpu:  # the code's stall, made longer by a loaded machine
            head += f" ({self.waiting_cpu:.0%} of it waiting for a CPU)"
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
            "machine": self.machine,
            "expected": self.expected,
            "waiting_cpu": self.waiting_cpu,
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
    machine_stall_count: int = 0
    """Of ``stall_count``, the stalls of a loaded machine (no code to blame)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "max": self.max,
            "p50": self.p50,
            "p99": self.p99,
            "mean": self.mean,
            "threshold": self.threshold,
            "stall_count": self.stall_count,
            "machine_stall_count": self.machine_stall_count,
            "stalls": [stall.to_dict() for stall in self.stalls],
        }

    def __info__(self) -> str:
        """What the shell prints when ``loop_stats()`` is evaluated at the prompt."""
        return str(self)

    def __str__(self) -> str:
        machine = self.machine_stall_count
        lines = [
            f"event loop: {self.count} samples, latency p50 {self.p50 * 1e3:.2f} ms, "
            f"p99 {self.p99 * 1e3:.2f} ms, max {self.max * 1e3:.2f} ms; "
            f"{self.stall_count} stalls over {self.threshold * 1e3:.0f} ms"
            + (f" ({machine} of a loaded machine)" if machine else "")
        ]
        for stall in self.stalls:
            culprit = stall.culprit
            where = culprit or ("(the machine: no CPU)" if stall.machine else "(no stack)")
            lines.append(f"  {stall.duration * 1e3:8.1f} ms  {where}")
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
    """Watches the running event loop from a thread; records iteration times and stalls.

    ``threshold``: an iteration of the loop longer than this is a stall (its stack is
    captured). ``interval``: how often the thread looks (the latency samples behind p50/p99:
    how long the loop had been busy when it looked). ``keep_samples``: samples kept for the
    percentiles; ``keep_stalls``: worst stalls kept. Start it from the loop it watches
    (``async with``, or :meth:`start` from inside the loop); :meth:`stop` joins the thread.
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
        self._machine_stall_count = 0
        self._serial = itertools.count()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id = 0
        self._probe: IterationProbe | None = None
        self._watched: _Watched | None = None  # the long iteration going on, as observed
        self._longest = 0.0  # the longest iteration, once the probe is removed
        self._expected: dict[float, str] = {}  # iteration start -> why held on purpose
        self._busy_since = 0.0  # the iteration of the last look (0.0: the loop was waiting)
        self._busy_age = 0.0

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
        selector = getattr(self._loop, "_selector", None)
        if selector is None:
            raise RuntimeError(
                f"LoopMonitor watches asyncio's selector event loop; {type(self._loop).__name__} "
                "has no selector"
            )
        self._loop_thread_id = threading.get_ident()
        self._probe = IterationProbe(selector, self.threshold)
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._watch, args=(self._probe,), name="blissng-loop-monitor", daemon=True
        )
        self._thread.start()
        _register(self)

    def stop(self) -> None:
        """Stop watching; returns once the thread has finished (within ``interval``)."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._remove_probe()

    def _remove_probe(self) -> None:
        """After the thread: what the loop reported since its last look, then unhook."""
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.remove()
            self._drain(probe)
            self._longest = max(self._longest, probe.longest)

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

        from blissng.threads import run_in_thread

        self._stopping.set()
        thread = self._thread
        if thread is not None:
            # join in a thread: the last iterations are still reported
            with anyio.CancelScope(shield=True):
                await run_in_thread(thread.join)
        self._thread = None
        self._remove_probe()

    # -- figures ------------------------------------------------------------------------------
    def stats(self) -> LoopStats:
        with self._lock:
            ordered = sorted(self._samples)
            worst = sorted((entry[2] for entry in self._stalls), key=lambda s: -s.duration)
            longest = self._probe.longest if self._probe is not None else self._longest
            return LoopStats(
                count=self._count,
                max=max(self._max, longest),
                p50=_percentile(ordered, 0.50),
                p99=_percentile(ordered, 0.99),
                mean=self._sum / self._count if self._count else 0.0,
                threshold=self.threshold,
                stall_count=self._stall_count,
                stalls=tuple(worst),
                machine_stall_count=self._machine_stall_count,
            )

    def reset(self) -> None:
        with self._lock:
            self._samples.clear()
            self._max = self._sum = 0.0
            self._count = self._stall_count = self._machine_stall_count = 0
            self._stalls.clear()
            self._longest = 0.0
            if self._probe is not None:
                self._probe.longest = 0.0

    # -- the thread ---------------------------------------------------------------------------
    def _watch(self, probe: IterationProbe) -> None:
        # A plain sleep between looks: the cheapest wake-up there is (an Event.wait costs a
        # condition and a lock per look, several times the look itself); stop() waits for
        # the end of the current one, at most ``interval``.
        while True:
            _sleep(self.interval)
            if self._stopping.is_set():
                break
            now = time.perf_counter()
            since = probe.busy_since
            age = now - since if since else 0.0
            if since:
                watched = self._watched
                if watched is None or watched.since != since:
                    # The loop thread's figures from the first look at this iteration: where
                    # the time of a stall went is known from (almost) its start.
                    watched = self._watched = _Watched(since, probe.sched.read())
                if age > self.threshold and not watched.stack:
                    # The loop is held right now: whoever holds it is on top of its stack.
                    watched.stack = _capture(sys._current_frames().get(self._loop_thread_id))
                    watched.at = time.time()
            self._drain(probe)
            self._sample(since, age)

    def _drain(self, probe: IterationProbe) -> None:
        """Record the long iterations the loop reported (with the stack seen during each)."""
        while probe.long:
            iteration = probe.long.popleft()
            watched = self._watched
            seen = watched if watched is not None and watched.since == iteration.start else None
            self._record_stall(iteration, seen)

    def _sample(self, since: float, age: float) -> None:
        """One latency sample per look, but one only per iteration (a stall seen in ten
        looks is one late answer, as a ping sent during it would be): its age when last
        seen, committed when the loop has moved on."""
        if since and since == self._busy_since:
            self._busy_age = age
            return
        if self._busy_since:
            self._commit(self._busy_age)
        self._busy_since, self._busy_age = since, age
        if not since:
            self._commit(0.0)

    def _commit(self, latency: float) -> None:
        with self._lock:
            self._samples.append(latency)
            self._count += 1
            self._sum += latency
            self._max = max(self._max, latency)

    def _record_stall(self, iteration: LongIteration, seen: _Watched | None) -> None:
        stack = seen.stack if seen is not None else ()
        if stack and stack[-1].function == "select" and "selectors" in stack[-1].filename:
            stack = ()  # taken as the loop went back to waiting: no code to name
        first, end = (seen.first if seen else None), iteration.end
        waiting = _share(first, end, lambda t: t.waiting_cpu)
        others = _share(first, end, lambda t: t.process_cpu - t.on_cpu)
        stall = Stall(
            duration=iteration.duration,
            at=seen.at if seen is not None and seen.at else time.time(),
            stack=stack,
            waiting_cpu=waiting,
            # the code's own part (running, or sleeping in a call) under the threshold
            machine=waiting is not None and iteration.duration * (1 - waiting) < self.threshold,
            others_cpu=others,
            expected=self._expected.pop(iteration.start, ""),
        )
        with self._lock:
            self._stall_count += 1
            self._machine_stall_count += stall.machine
            entry = (stall.duration, next(self._serial), stall)
            if len(self._stalls) < self.keep_stalls:
                heapq.heappush(self._stalls, entry)
            elif stall.duration > self._stalls[0][0]:
                heapq.heapreplace(self._stalls, entry)
        if self.log_stalls:  # a warning when there is code to blame
            blame = stall.culprit is not None and not stall.expected
            (log.warning if blame else log.info)("%s", stall.describe())


@dataclasses.dataclass
class _Watched:
    """A long iteration the monitor thread saw going on: since when, the loop thread's
    figures when first seen, its stack once past the threshold."""

    since: float
    first: ThreadTimes | None
    stack: tuple[FrameInfo, ...] = ()
    at: float = 0.0


def _share(
    first: ThreadTimes | None, end: ThreadTimes | None, seconds: Callable[[ThreadTimes], float]
) -> float | None:
    """The share of [first, end] that ``seconds`` grew by (None when too short to tell,
    under 10 ms, or unknown)."""
    if first is None or end is None or end.wall - first.wall < 0.01:
        return None
    return min(1.0, max(0.0, (seconds(end) - seconds(first)) / (end.wall - first.wall)))


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


def loop_monitor(threshold: float = 0.05, *, interval: float = 0.02, **kwargs: Any) -> LoopMonitor:
    """``async with loop_monitor(threshold=0.02) as monitor:`` watches the loop meanwhile.

    The default look every 20 ms (a stall of 70 ms always has its stack) is what a server
    affords at rest: the looks are most of its idle CPU (100 looks/s cost 0.5 % of a core).
    """
    return LoopMonitor(threshold, interval=interval, **kwargs)


@contextlib.contextmanager
def expected_stall(reason: str) -> Iterator[None]:
    """Hold the loop on purpose (``reason`` says why), from the loop's thread: a stall of
    this block is reported as such, at INFO, without blaming code."""
    marked = []
    for monitor in _recent:
        probe = monitor._probe
        if monitor.running and probe is not None and probe.busy_since:
            monitor._expected[probe.busy_since] = reason
            marked.append((monitor, probe.busy_since))
    try:
        yield
    finally:
        for monitor, since in marked:
            if time.perf_counter() - since <= monitor.threshold:  # no stall: nothing to say
                monitor._expected.pop(since, None)
