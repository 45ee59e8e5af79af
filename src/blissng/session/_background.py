"""Background tasks owned by the server: regulation loops, periodic monitoring.

They live in the server's task group, not a session's, so they survive the session that
started them being closed, and keep their period while scans run (each tick is scheduled on
a fixed-rate grid; lateness is measured as jitter). A step that fails on a device (a
:class:`~blissng.errors.BlissngError`: a timeout, a refused command) leaves the task FAILING,
logged once in one line and tried again at its next tick, so a monitor or a regulation loop
comes back with its device; any other error (a bug in the step) stops the task alone, with its
traceback. The server and the other tasks go on.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import numpy as np

from blissng.errors import BlissngError

log = logging.getLogger("blissng.background")


class TaskState(enum.Enum):
    RUNNING = "running"
    FAILING = "failing"  # its last step failed on a device: tried again at each tick
    STOPPED = "stopped"
    FAILED = "failed"


@dataclasses.dataclass
class JitterStats:
    """How late each tick started against its grid; a bounded window of recent ticks."""

    window: collections.deque[float] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=10_000)
    )
    ticks: int = 0
    skipped: int = 0  # ticks missed because a step ran longer than the period

    def add(self, lateness: float) -> None:
        self.ticks += 1
        self.window.append(lateness)

    def summary(self) -> dict[str, float]:
        if not self.window:
            return {"ticks": 0, "skipped": self.skipped, "max": 0.0, "p99": 0.0, "median": 0.0}
        values = np.fromiter(self.window, float)
        return {
            "ticks": self.ticks,
            "skipped": self.skipped,
            "max": float(values.max()),
            "p99": float(np.percentile(values, 99)),
            "median": float(np.median(values)),
        }


@dataclasses.dataclass
class BackgroundTask:
    name: str
    period: float
    step: Callable[[], Awaitable[Any]]
    owner: str = ""  # the session that started it, for display only
    state: TaskState = TaskState.RUNNING
    error: BaseException | None = None
    failed_steps: int = 0  # steps that failed on a device, since the start
    jitter: JitterStats = dataclasses.field(default_factory=JitterStats)
    scope: anyio.CancelScope = dataclasses.field(default_factory=anyio.CancelScope)
    stopped: anyio.Event = dataclasses.field(default_factory=anyio.Event)

    def __info__(self) -> str:
        stats = self.jitter.summary()
        error = f" error: {self.error!r}" if self.error else ""
        return (
            f"{self.name}: {self.state.value}, every {self.period:g} s, {stats['ticks']} ticks, "
            f"jitter max {stats['max'] * 1e3:.2f} ms p99 {stats['p99'] * 1e3:.2f} ms{error}"
        )


class BackgroundTasks:
    """``async with BackgroundTasks() as tasks:`` the server's background activities."""

    def __init__(self) -> None:
        self._tasks: dict[str, BackgroundTask] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> BackgroundTasks:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(*exc_info)
        finally:
            self._tg = None

    @property
    def tasks(self) -> Mapping[str, BackgroundTask]:
        return dict(self._tasks)

    def start(
        self, name: str, step: Callable[[], Awaitable[Any]], *, period: float, owner: str = ""
    ) -> BackgroundTask:
        """Call ``await step()`` every ``period`` seconds until stopped."""
        if self._tg is None:
            raise RuntimeError("background tasks are not running (use `async with`)")
        if period <= 0:
            raise ValueError(f"period of background task {name!r} must be > 0, got {period}")
        existing = self._tasks.get(name)
        if existing is not None and not existing.stopped.is_set():  # running, or failing
            raise ValueError(f"background task {name!r} is already running; stop it first")
        task = BackgroundTask(name, period, step, owner)
        self._tasks[name] = task
        self._tg.start_soon(self._run, task, name=f"background:{name}")
        return task

    async def stop(self, name: str) -> None:
        task = self._tasks.get(name)
        if task is None:
            raise KeyError(f"no background task {name!r}; running: {', '.join(self._tasks)}")
        task.scope.cancel()
        await task.stopped.wait()

    async def _run(self, task: BackgroundTask) -> None:
        start = anyio.current_time()
        tick = 0
        try:
            with task.scope:
                while True:
                    scheduled = start + tick * task.period
                    await anyio.sleep_until(scheduled)
                    task.jitter.add(max(0.0, anyio.current_time() - scheduled))
                    await _step_or_wait_for_the_device(task)
                    # Next tick on the grid; ticks whose time has passed are skipped, not run
                    # late in a burst.
                    elapsed = anyio.current_time() - start
                    next_tick = max(tick + 1, math.floor(elapsed / task.period) + 1)
                    task.jitter.skipped += next_tick - tick - 1
                    tick = next_tick
            task.state = TaskState.STOPPED
        except Exception as exc:  # a step's bug stops this task only
            task.state = TaskState.FAILED
            task.error = exc
            log.error("background task %s failed: %r", task.name, exc, exc_info=exc)
        finally:
            task.stopped.set()


async def _step_or_wait_for_the_device(task: BackgroundTask) -> None:
    """One step; a device's error makes the task FAILING (one log line) until a step works."""
    try:
        await task.step()
    except BlissngError as exc:
        task.failed_steps += 1
        if task.state is not TaskState.FAILING:
            log.warning(
                "background task %s: %s; trying again every %g s", task.name, exc, task.period
            )
        task.state, task.error = TaskState.FAILING, exc
        return
    if task.state is TaskState.FAILING:
        log.info("background task %s works again", task.name)
        task.state, task.error = TaskState.RUNNING, None


class Monitor:
    """Periodic readings of something (counters): the last value and a bounded history."""

    def __init__(
        self, name: str, read: Callable[[], Awaitable[Mapping[str, float]]], history: int = 1000
    ) -> None:
        self.name = name
        self._read = read
        self.last: Mapping[str, float] = {}
        self.history: collections.deque[tuple[float, Mapping[str, float]]] = collections.deque(
            maxlen=history
        )

    async def step(self) -> None:
        values = await self._read()
        self.last = values
        self.history.append((time.time(), values))
