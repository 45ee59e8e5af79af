"""What can go wrong with a workflow job, as exceptions that say which job and which node.

These classes are pickled from worker processes (local workers, Celery workers) back to the
client, so each one rebuilds itself from its positional ``args`` (see ``__reduce__``).
"""

from __future__ import annotations

from typing import Any

from blissng.errors import BlissngError


class WorkflowError(BlissngError):
    """Base class of every error of the workflows layer."""


class WorkflowsNotInstalled(WorkflowError, ImportError):
    """The ``workflows`` extra (ewoks, ewoksjob, celery) is missing."""


class WorkflowNotFound(WorkflowError, LookupError):
    """A workflow name, file or dict that cannot be turned into an Ewoks graph."""


class InvalidInputs(WorkflowError, ValueError):
    """``inputs`` given to ``run_job`` that are not in a form Ewoks takes."""


class JobError(WorkflowError):
    """A job did not produce its result. ``job_id`` says which job."""

    job_id: str | None = None


class JobFailed(JobError):
    """A task of the workflow raised: ``node`` names the node, ``error_type`` the exception.

    ``remote_traceback`` is the formatted traceback from the worker process.
    """

    def __init__(
        self,
        message: str,
        node: str | None = None,
        error_type: str | None = None,
        remote_traceback: str | None = None,
        job_id: str | None = None,
    ) -> None:
        super().__init__(message, node, error_type, remote_traceback, job_id)
        self.message = message
        self.node = node
        self.error_type = error_type
        self.remote_traceback = remote_traceback
        self.job_id = job_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self.args)

    def __str__(self) -> str:
        prefix = f"job {self.job_id}: " if self.job_id else ""
        return prefix + self.message


class JobTimeout(JobError, TimeoutError):
    """The job ran longer than the ``timeout`` given to ``run_job``; its work was stopped."""
