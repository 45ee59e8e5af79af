"""Keeping the server's own tasks alive: retry with backoff, report, go on.

The server's root task group holds tasks that talk to the outside (the data Redis, files,
child processes). In a task group, one task's exception cancels all the others: an I/O error
in a helper task would end the whole server, its scans and its sessions. So each such task
runs under :func:`keep_running`, its owner: an exception is logged (once while it keeps
failing the same way), the task is started again after a growing pause, and the server goes
on. Only cancellation (the server stopping) ends it. docs/reliability.md lists what each task
promises.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

log = logging.getLogger("blissng.server")


class Backoff:
    """Growing pauses between attempts: ``initial``, doubled each time up to ``maximum``;
    ``reset()`` after a success. ``next()`` returns the pause to take now."""

    def __init__(self, initial: float = 0.1, maximum: float = 10.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def next(self) -> float:
        pause = self._next
        self._next = min(self.maximum, self._next * 2)
        return pause

    def reset(self) -> None:
        self._next = self.initial


class _Started:
    """Forwards the first ``started()`` to the real task status, and remembers it."""

    def __init__(self, task_status: anyio.abc.TaskStatus[Any]) -> None:
        self._task_status = task_status
        self.done = False

    def started(self, value: Any = None) -> None:
        if not self.done:
            self.done = True
            self._task_status.started(value)


async def keep_running(
    name: str,
    func: Callable[..., Awaitable[Any]],
    *,
    initial: float = 0.5,
    maximum: float = 30.0,
    healthy_after: float = 60.0,
    task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``await func(task_status=...)`` until cancelled, starting it again whenever it
    fails.

    An error before ``func`` reported its start is raised (the server cannot start); after,
    it is logged and ``func`` runs again after a pause that grows from ``initial`` to
    ``maximum`` while it keeps failing within ``healthy_after`` seconds of its start. The
    first failure is logged with its traceback, repeats of the same error as one line.
    ``func`` returning ends it.
    """
    started = _Started(task_status)
    backoff = Backoff(initial, maximum)
    last_error: str | None = None
    while True:
        began = anyio.current_time()
        try:
            await func(task_status=started)
            started.started()
            return
        except Exception as exc:
            if not started.done:
                raise
            error = f"{type(exc).__name__}: {exc}"
            if anyio.current_time() - began > healthy_after:
                backoff.reset()
            pause = backoff.next()
            if error != last_error:
                log.error(
                    "%s failed (%s); starting it again in %.1f s",
                    name,
                    error,
                    pause,
                    exc_info=last_error is None,
                )
            else:
                log.warning("%s failed again (%s); next try in %.1f s", name, error, pause)
            last_error = error
        await anyio.sleep(pause)
