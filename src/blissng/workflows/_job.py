"""A ``Job``: the promise ``run_job`` returns.

A job is driven by a task in its :class:`~blissng.workflows.JobManager`'s task group;
the ``Job`` object is how callers see it, from the event loop (``await job``) or from a worker
thread running console code (``job.result(timeout)``). Cancelling goes through the job's cancel
scope, so stopping the work (terminating a process, revoking a Celery task) happens in the
driver's shielded cleanup, whichever thread asked.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
from anyio.lowlevel import EventLoopToken

from blissng.errors import Aborted

from ._errors import JobError

if TYPE_CHECKING:
    from ._graphs import LoadedWorkflow


class JobState(enum.StrEnum):
    PENDING = "pending"  # accepted, waiting for a worker
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def finished(self) -> bool:
        return self not in (JobState.PENDING, JobState.RUNNING)


class Job:
    """One workflow run. Awaitable; ``result(timeout)`` for code in worker threads."""

    def __init__(
        self,
        job_id: str,
        workflow: LoadedWorkflow,
        inputs: list[dict[str, Any]],
        executor: str,
        timeout: float | None,
        token: EventLoopToken,
        loop_thread: int,
        scan: str | None = None,
    ) -> None:
        self.id = job_id
        self.workflow = workflow
        self.inputs = inputs
        self.executor = executor
        self.timeout = timeout
        self.scan = scan
        self.state = JobState.PENDING
        self.submitted = time.time()
        self.started: float | None = None
        self.ended: float | None = None
        self.pid: int | None = None  # the process running it (local worker, Celery pool child)
        self.worker: str | None = None  # where it runs ("local", a Celery hostname)
        self.note: str | None = None  # what the user should know while it waits
        self._token = token
        self._loop_thread = loop_thread
        # The scope its driver (the JobManager) runs it in; cancel() cancels it.
        self.scope = anyio.CancelScope()
        self._done = anyio.Event()
        self._done_threadsafe = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._cancel_requested = False
        # (workflow, inputs) still to load, when run_job was called on the event loop:
        # the driver takes them (and clears them) and loads them in a worker thread.
        self.deferred: tuple[Any, Any] | None = None

    # ------------------------------------------------------------------ public

    @property
    def name(self) -> str:
        return self.workflow.name

    def done(self) -> bool:
        return self.state.finished

    def cancel(self) -> bool:
        """Stop the job: its process is terminated (local) or its task revoked and terminated
        (Celery). Returns False if it had already finished. ``await job`` then raises
        :class:`~blissng.errors.Aborted` once the work is stopped."""
        if self.state.finished:
            return False
        self._cancel_requested = True
        if self._in_loop_thread():
            self.scope.cancel()
        else:
            anyio.from_thread.run_sync(self.scope.cancel, token=self._token)
        return True

    async def wait(self) -> Any:
        """The workflow's result (what ``ewoks.execute_graph`` returned), or its error."""
        await self._done.wait()
        return self._outcome()

    def __await__(self) -> Generator[Any, None, Any]:
        return self.wait().__await__()

    def result(self, timeout: float | None = None) -> Any:
        """Block this (worker) thread until the job ends; ``TimeoutError`` if it is still
        running after ``timeout`` seconds (the job goes on). In async code, ``await job``."""
        if self._in_loop_thread():
            raise RuntimeError(
                f"job.result() would block the event loop that runs job {self.id}: "
                "use `await job` there"
            )
        if not self._done_threadsafe.wait(timeout):
            raise TimeoutError(
                f"job {self.id} ({self.name}) is still {self.state} after {timeout} s "
                "(it goes on; job.cancel() stops it)"
            )
        return self._outcome()

    def exception(self) -> BaseException | None:
        """The error of a finished job (None if it succeeded or is not finished)."""
        return self._error

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.name!r} {self.executor} {self.state}>"

    def __info__(self) -> str:
        """What the shell shows for a job (BLISS's ``__info__`` convention)."""
        lines = [
            f"Job {self.id}: {self.name} ({self.workflow.source})",
            f"  executor: {self.executor}" + (f" on {self.worker}" if self.worker else ""),
            f"  state:    {self.state}",
        ]
        if self.scan:
            lines.append(f"  scan:     {self.scan}")
        if self.note and not self.state.finished:
            lines.append(f"  note:     {self.note}")
        if self.started is not None:
            end = self.ended if self.ended is not None else time.time()
            lines.append(f"  ran:      {end - self.started:.3f} s")
        if self._error is not None:
            lines.append(f"  error:    {self._error}")
        elif self.state is JobState.SUCCEEDED:
            lines.append(f"  result:   {self._result!r}"[:500])
        return "\n".join(lines)

    # ------------------------------------------------------------------ driver side
    # Called by the JobManager that runs the job (blissng.workflows._manager), not by users.

    def _in_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def mark_running(self, pid: int | None, worker: str | None) -> None:
        """The job's process (or Celery worker) started it."""
        self.state = JobState.RUNNING
        self.started = self.started or time.time()
        self.pid = pid
        self.worker = worker

    def finish(
        self, state: JobState, result: Any = None, error: BaseException | None = None
    ) -> None:
        """Settle the outcome and wake the waiters at once."""
        self.settle(state, result, error)
        self.wake()

    def settle(
        self, state: JobState, result: Any = None, error: BaseException | None = None
    ) -> None:
        """The outcome, without waking waiters yet (the record is written in between)."""
        if isinstance(error, JobError) and error.job_id is None:
            error.job_id = self.id
        self.state = state
        self.ended = time.time()
        self._result = result
        self._error = error

    def wake(self) -> None:
        """Wake whoever waits for the job (``await job``, ``job.result()``)."""
        self._done.set()
        self._done_threadsafe.set()

    def _outcome(self) -> Any:
        if self._error is not None:
            raise self._error
        if self.state is JobState.CANCELLED:  # pragma: no cover - cancelled jobs carry an error
            raise Aborted(f"job {self.id} was cancelled")
        return self._result
