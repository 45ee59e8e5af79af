"""The owner of jobs: a task group that drives them, the executors, the Redis record.

A session (or the server, or a script) owns one manager::

    async with JobManager(redis_urls, settings=config_section, session="demo") as jobs:
        job = jobs.run_job("fit_peak", inputs={...})
        result = await job

``run_job`` may be called from the event loop or from any worker thread (console code runs in
worker threads): it returns the :class:`Job` at once; the job's driver task runs in the
manager's task group. Leaving the block cancels unfinished jobs (their work is stopped) and
terminates the local worker processes.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.from_thread
from anyio.abc import TaskGroup

from blissng.errors import Aborted
from blissng.threads import run_in_thread

from ..redisdb import RedisUrls, async_client
from ._errors import JobError, JobFailed, JobTimeout, WorkflowError
from ._extra import require_workflows_extra
from ._graphs import LoadedWorkflow, load_workflow, normalize_inputs, pending_workflow
from ._job import Job, JobState
from ._local import LocalExecutor
from ._record import JobRecorder
from ._settings import WorkflowSettings, default_celery_url, settings_from_config

log = logging.getLogger(__name__)

_current: contextvars.ContextVar[JobManager | None] = contextvars.ContextVar(
    "blissng_job_manager", default=None
)
_running: list[JobManager] = []  # for threads that did not inherit the context
KEEP_JOBS = 200


def current_manager() -> JobManager:
    """The manager of this context (a session's), else the last one started in the process."""
    manager = _current.get() or (_running[-1] if _running else None)
    if manager is None:
        raise WorkflowError(
            "no JobManager is running: run_job needs one (a blissng session has one; in a "
            "script use `async with JobManager(...) as jobs: jobs.run_job(...)`)"
        )
    return manager


def run_job(
    workflow: str | Path | Mapping[str, Any],
    inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    executor: str | None = None,
    timeout: float | None = None,
    *,
    scan: str | None = None,
) -> Job:
    """Submit ``workflow`` to the current manager (see :meth:`JobManager.run_job`)."""
    return current_manager().run_job(workflow, inputs, executor, timeout, scan=scan)


class JobManager:
    """Runs jobs for one owner (a session). See the module docstring."""

    def __init__(
        self,
        redis: RedisUrls | None = None,
        settings: WorkflowSettings | Mapping[str, Any] | None = None,
        *,
        session: str | None = None,
        config_dir: Path | str | None = None,
        scan_trigger: bool = True,
        scan_hooks: Any = None,
    ) -> None:
        self.settings = WorkflowSettings.from_section(settings)
        self.scan_trigger = scan_trigger
        self.scan_hooks = scan_hooks  # ScanHooks; None: those of the context it starts in
        self._remove_trigger: Any = None
        self.redis = redis
        self.session = session
        self.config_dir = Path(config_dir) if config_dir is not None else None
        self.jobs: deque[Job] = deque(maxlen=KEEP_JOBS)  # the most recent, for the shell
        self._executors: dict[str, Any] = {}
        self._tg: TaskGroup | None = None
        self._recorder: JobRecorder | None = None
        self._client: Any = None
        self._token: Any = None
        self._loop_thread: int | None = None
        self._context_token: contextvars.Token[JobManager | None] | None = None

    @classmethod
    def from_config(
        cls,
        config: Any,
        redis: RedisUrls | None = None,
        *,
        session: str | None = None,
        scan_hooks: Any = None,
    ) -> JobManager:
        """A manager with the ``workflows:`` section of a ``blissng.config.Config``."""
        settings, base_dir = settings_from_config(config)
        return cls(redis, settings, session=session, config_dir=base_dir, scan_hooks=scan_hooks)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> JobManager:
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()
        if self.redis is not None:
            self._client = async_client(self.redis.data)
            self._recorder = JobRecorder(self._client, self.settings.job_ttl, self.session)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        if self.settings.warm_workers:
            self._tg.start_soon(self._executor("local").warm_up, self.settings.warm_workers)
        self._context_token = _current.set(self)
        _running.append(self)
        if self.scan_trigger:
            from ._triggers import install_scan_trigger  # imports the scans layer

            self._remove_trigger = install_scan_trigger(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        _running.remove(self)
        if self._remove_trigger is not None:
            self._remove_trigger()
            self._remove_trigger = None
        if self._context_token is not None:
            try:
                _current.reset(self._context_token)
            except ValueError:  # exited from another context than entered
                _current.set(None)
        assert self._tg is not None
        for job in self.jobs:
            if not job.done():
                job.scope.cancel()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            with anyio.CancelScope(shield=True):
                for executor in self._executors.values():
                    await executor.aclose()
                if self._client is not None:
                    await self._client.aclose()
            self._tg = None

    # ------------------------------------------------------------------ submitting

    def run_job(
        self,
        workflow: str | Path | Mapping[str, Any],
        inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        executor: str | None = None,
        timeout: float | None = None,
        *,
        scan: str | None = None,
    ) -> Job:
        """Submit a workflow; returns its :class:`Job` at once.

        ``workflow``: a graph dict, a name under ``workflows.graphs`` of the configuration (or
        shipped with blissng, like ``"fit_peak"``), or an Ewoks JSON/YAML file.
        ``inputs``: ``{name: value}`` for the start nodes, ``{node: {name: value}}``, or
        Ewoks' list form.

        Called from a worker thread, a workflow that cannot be found raises here; called on
        the event loop, files are read off the loop and such an error fails the job.
        ``executor``: ``"local"`` or ``"celery"`` (default: the configuration's).
        ``timeout``: seconds; a job running longer is stopped and raises :class:`JobTimeout`.
        ``scan``: the key of the scan that triggered it (recorded in the job document).
        """
        if self._tg is None:
            raise WorkflowError("this JobManager is not running (use `async with JobManager()`)")
        executor = executor or self.settings.executor
        if executor not in ("local", "celery"):
            raise WorkflowError(f"unknown workflow executor {executor!r}: use 'local' or 'celery'")
        if timeout is not None and timeout <= 0:
            raise WorkflowError(f"run_job timeout must be positive seconds, got {timeout!r}")
        require_workflows_extra(executor)
        if executor == "celery" and self._celery_url() is None:
            raise WorkflowError(
                "the celery executor needs a broker: set workflows.celery_url in the "
                "configuration, or give the JobManager blissng's Redis URLs"
            )
        if threading.get_ident() == self._loop_thread:
            if isinstance(workflow, Mapping):
                loaded = load_workflow(workflow, self.settings.graphs, self.config_dir)
                job = self._submit(loaded, normalize_inputs(inputs, loaded.graph), executor,
                                   timeout, scan)  # fmt: skip
            else:
                # On the event loop, reading a file (on NFS, say) could stall it: the job's
                # driver reads it in a worker thread; a bad name then fails the job.
                job = self._submit(pending_workflow(workflow), [], executor, timeout, scan)
                job.deferred = (workflow, inputs)
            return job
        # A worker thread (console code): read the file here, so a bad name raises at once.
        loaded = load_workflow(workflow, self.settings.graphs, self.config_dir)
        normalized = normalize_inputs(inputs, loaded.graph)
        return anyio.from_thread.run_sync(
            self._submit, loaded, normalized, executor, timeout, scan, token=self._token
        )

    def _submit(
        self,
        workflow: LoadedWorkflow,
        inputs: list[dict[str, Any]],
        executor: str,
        timeout: float | None,
        scan: str | None,
    ) -> Job:
        assert self._tg is not None and self._loop_thread is not None
        job = Job(
            str(uuid.uuid4()), workflow, inputs, executor, timeout, self._token,
            self._loop_thread, scan,
        )  # fmt: skip
        self.jobs.append(job)
        self._tg.start_soon(self._drive, job, name=f"job {job.id} ({workflow.name})")
        return job

    def jobs_of_scan(self, key: str) -> list[Job]:
        """The jobs a scan (``blissng:scan:<id>``) triggered, still in :attr:`jobs`."""
        return [job for job in self.jobs if job.scan == key]

    def _celery_url(self) -> str | None:
        if self.settings.celery_url:
            return self.settings.celery_url
        if self.redis is not None:
            return default_celery_url(self.redis.settings)
        return None

    def _executor(self, name: str) -> Any:
        if name not in self._executors:
            if name == "local":
                self._executors[name] = LocalExecutor(self.settings.local_workers)
            else:
                from ._remote import CeleryExecutor

                url = self._celery_url()
                assert url is not None
                self._executors[name] = CeleryExecutor(
                    url, self.settings.queue, self.settings.job_ttl
                )
        return self._executors[name]

    # ------------------------------------------------------------------ driving

    async def _drive(self, job: Job) -> None:
        """Run one job to its end; record every transition; never raise into the task group
        (except the manager's own cancellation, after finishing the job as cancelled)."""
        recorder = self._recorder
        state, result = JobState.FAILED, None
        error: BaseException | None = None
        recorded: list[bool] = []  # the submitted document was written

        async def started(pid: int | None, worker: str | None = None) -> None:
            job.mark_running(pid, worker or job.executor)
            if recorder is not None:
                await recorder.running(job)

        async def note(text: str) -> None:
            job.note = text
            log.warning("job %s: %s", job.id, text)
            if recorder is not None:
                await recorder.note(job)

        async def run() -> Any:
            if job.deferred is not None:
                workflow, inputs = job.deferred
                job.deferred = None
                job.workflow = await run_in_thread(
                    load_workflow, workflow, self.settings.graphs, self.config_dir
                )
                job.inputs = normalize_inputs(inputs, job.workflow.graph)
            if recorder is not None:
                await recorder.submitted(job)
                recorded.append(True)
            executor = self._executor(job.executor)
            if job.executor == "celery":
                return await executor.run(
                    job.id, job.workflow.graph, job.inputs, started, on_note=note
                )
            return await executor.run(job.id, job.workflow.graph, job.inputs, started)

        try:
            with job.scope:
                if job.timeout is not None:
                    with anyio.move_on_after(job.timeout) as deadline:
                        result = await run()
                    if deadline.cancelled_caught:
                        raise JobTimeout(
                            f"job {job.id} ({job.name}) ran longer than its timeout of "
                            f"{job.timeout} s and was stopped"
                        )
                else:
                    result = await run()
            if job.scope.cancelled_caught:
                state, error = JobState.CANCELLED, Aborted(f"job {job.id} was cancelled")
            else:
                state = JobState.SUCCEEDED
        except JobTimeout as exc:
            state, error = JobState.TIMED_OUT, exc
        except Aborted as exc:
            state, error = JobState.CANCELLED, exc
        except (JobError, WorkflowError) as exc:  # a task failed; a workflow file not found
            state, error = JobState.FAILED, exc
        except Exception as exc:
            log.exception("job %s: executor error", job.id)
            state, error = JobState.FAILED, JobFailed(f"{type(exc).__name__}: {exc}")
        except BaseException:
            # The manager itself is being cancelled: its jobs are cancelled with it.
            job.finish(JobState.CANCELLED, None, Aborted(f"job {job.id} was cancelled"))
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                if recorder is not None:
                    if not recorded:
                        await recorder.submitted(job)
                    await recorder.finished(job, None, job.exception())
            raise
        # Recorded before waiters wake: whoever awaited the job finds its document final.
        job.settle(state, result, error)
        try:
            if recorder is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    if not recorded:
                        await recorder.submitted(job)  # failed before its document was written
                    await recorder.finished(job, result, error)
        finally:
            job.wake()


@contextlib.contextmanager
def blocking_job_manager(
    redis: RedisUrls | None = None,
    settings: WorkflowSettings | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Iterator[JobManager]:
    """For plain scripts without an event loop: a :class:`JobManager` running on an event loop
    in a thread of its own, until the block ends::

        with blocking_job_manager() as jobs:
            print(jobs.run_job("fit.json", inputs={...}).result(timeout=60))
    """
    with anyio.from_thread.start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(JobManager(redis, settings, **kwargs)) as jobs:
            yield jobs
