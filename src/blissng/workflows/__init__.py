"""Ewoks workflows as jobs: ``run_job`` returns a promise; jobs run in local worker processes
or on Celery workers, and are recorded in Redis like scans.

Nothing here imports ewoks or celery at import time: the ``workflows`` extra is only needed
to run a job (``run_job`` says how to install it when it is missing).
"""

from .celery_app import run_worker
from .errors import (
    InvalidInputs,
    JobCancelled,
    JobError,
    JobFailed,
    JobTimeout,
    WorkflowError,
    WorkflowNotFound,
    WorkflowsNotInstalled,
)
from .graphs import LoadedWorkflow, load_workflow, packaged_workflows
from .job import Job, JobState
from .manager import JobManager, blocking_job_manager, current_manager, run_job
from .record import follow_jobs, list_jobs, read_job
from .settings import CELERY_DB, WorkflowSettings

__all__ = [
    "CELERY_DB",
    "InvalidInputs",
    "Job",
    "JobCancelled",
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
]
