"""Workflows started by scans: ``ascan(..., workflow="fit_peak")`` submits a job when the scan
ends.

The scans layer offers end-of-scan hooks (:class:`blissng.scans.ScanHooks`) and passes the scan's
``workflow=`` keyword untouched; a :class:`JobManager` registers a hook (while it runs) with
the hooks it was given (its session's, which are its server's) or else those of the scan
context it starts in, and submits the workflow of each scan of its session. The job's start
nodes receive two inputs:

- ``scan``: the scan's key in the data Redis (``blissng:scan:<id>``);
- ``redis_url``: the URL of that data Redis;

so the workflow reads the data through the reader API (``blissng.workflows.tasks.
LoadScanChannels`` does). What ``workflow=`` may be:

- a workflow as ``run_job`` takes it: a configured or shipped name, a file, a graph dict;
- ``{"workflow": <that>, "inputs": {...}, "executor": "celery", "timeout": 60,
  "on": ["done"]}`` for more inputs, another executor, a timeout, or other end states;
- a list of those (several jobs).

By default only scans that ended normally (``done``) submit; ``on`` lists the end states that
do (``done``, ``aborted``, ``failed``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blissng.scans import ScanEvent, ScanHooks, current_context

from ._errors import WorkflowError

if TYPE_CHECKING:
    from ._job import Job
    from ._manager import JobManager

log = logging.getLogger(__name__)

DEFAULT_ON = ("done",)


def _requests(spec: Any) -> list[dict[str, Any]]:
    """``workflow=`` as a list of ``{"workflow", "inputs", "executor", "timeout", "on"}``."""
    if spec is None:
        return []
    if isinstance(spec, list | tuple):
        return [r for item in spec for r in _requests(item)]
    if isinstance(spec, Mapping) and "workflow" in spec:
        unknown = set(spec) - {"workflow", "inputs", "executor", "timeout", "on"}
        if unknown:
            raise WorkflowError(
                f"scan workflow= request has unknown keys {', '.join(sorted(unknown))}: use "
                "workflow, inputs, executor, timeout, on"
            )
        return [dict(spec)]
    if isinstance(spec, str | Path | Mapping):
        return [{"workflow": spec}]
    raise WorkflowError(
        f"scan workflow= takes a workflow name, file or graph, a request dict or a list, "
        f"not {type(spec).__name__}"
    )


def scan_inputs(event: ScanEvent, extra: Mapping[str, Any] | Sequence[Any] | None) -> Any:
    """The scan's key and data Redis for the start nodes, plus the request's own inputs."""
    given: list[dict[str, Any]] = [
        {"name": "scan", "value": event.key},
        {"name": "redis_url", "value": event.redis_url},
    ]
    if extra is None:
        return given
    if isinstance(extra, Mapping):
        # Keep the mapping form (node ids as keys work there); the scan inputs go first.
        return {"scan": event.key, "redis_url": event.redis_url, **extra}
    return given + [dict(item) for item in extra]


def submit_for_scan(manager: JobManager, event: ScanEvent) -> list[Job]:
    """Submit the jobs ``event.workflow`` asks for (none if the scan was not published)."""
    if event.workflow is None:
        return []
    if event.key is None or event.redis_url is None:
        raise WorkflowError(
            f"scan {event.number} was not published to Redis: its workflow cannot read its data"
        )
    jobs = []
    for request in _requests(event.workflow):
        if event.state not in tuple(request.get("on", DEFAULT_ON)):
            continue
        job = manager.run_job(
            request["workflow"],
            scan_inputs(event, request.get("inputs")),
            request.get("executor"),
            request.get("timeout"),
            scan=event.key,
        )
        jobs.append(job)
    return jobs


def install_scan_trigger(manager: JobManager) -> Callable[[], None]:
    """Register the end-of-scan hook of ``manager`` with ``manager.scan_hooks`` (default: the
    current scan context's hooks); returns the function that removes it.

    Scans of another session are left to that session's manager (a manager without a session
    name takes every scan).
    """
    scan_hooks: ScanHooks = manager.scan_hooks or current_context().hooks

    def on_scan_end(event: ScanEvent) -> None:
        if manager.session is not None and event.session != manager.session:
            return
        jobs = submit_for_scan(manager, event)
        scan_jobs = getattr(event.scan, "jobs", None)
        for job in jobs:
            if isinstance(scan_jobs, list):
                scan_jobs.append(job)
            _announce(f"Scan {event.number}: workflow {job.name} submitted as job {job.id}")

    return scan_hooks.add_scan_end_hook(on_scan_end)


def _announce(text: str) -> None:
    """A line on the scan's output (its context's), or the log if it has none."""
    try:
        current_context().print(text)
    except Exception:
        log.info(text)
