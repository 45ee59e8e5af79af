"""Ewoks workflows as jobs: ``run_job`` returns a promise; jobs run in local worker processes
or on Celery workers, and are recorded in Redis like scans.

Nothing here imports ewoks or celery at import time: the ``workflows`` extra is only needed
to run a job (``run_job`` says how to install it when it is missing).

The implementation modules are private; ``tasks`` stays public because Ewoks names a task
by its class path (``blissng.workflows.tasks.FitGaussianPeak``) in the workflow graphs users
save. ``python -m blissng.workflows`` (or ``blissng worker``) runs a Celery worker.
"""

from ._celery_app import WORKER_READY_LINE, run_worker
from ._errors import (
    InvalidInputs,
    JobError,
    JobFailed,
    JobTimeout,
    WorkflowError,
    WorkflowNotFound,
    WorkflowsNotInstalled,
)
from ._graphs import LoadedWorkflow, load_workflow, packaged_workflows
from ._job import Job, JobState
from ._manager import JobManager, blocking_job_manager, current_manager, run_job
from ._record import follow_jobs, list_jobs, read_job
from ._settings import CELERY_DB, WorkflowSettings
from ._worker import main as worker_main

__all__ = [
    "CELERY_DB",
    "WORKER_READY_LINE",
    "InvalidInputs",
    "Job",
    "JobError",
    "JobFailed",
    "JobManager",
    "JobState",
    "JobTimeout",
    "LoadedWorkflow",
    "WorkflowError",
    "WorkflowNotFound",
    "WorkflowSettings",
    "WorkflowsNotInstalled",
    "blocking_job_manager",
    "current_manager",
    "follow_jobs",
    "list_jobs",
    "load_workflow",
    "packaged_workflows",
    "read_job",
    "run_job",
    "run_worker",
    "worker_main",
]
