"""blissng's Celery application: one task that runs an Ewoks graph, and the worker entry point.

Broker and result backend are the same Redis database (by default database ``CELERY_DB`` of
blissng's settings Redis). Arguments and results travel as JSON with numpy arrays
(:mod:`blissng.workflows._serialization`), never pickle: a message must not be able to run code
on a worker.

A worker uses the ``prefork`` pool on purpose: revoking a task with ``terminate=True`` (what
``job.cancel()`` does) kills the pool process running it, which the ``solo`` and thread pools
cannot do. ``task_track_started`` makes the worker store STARTED with the pid of that process.

Run a worker with ``blissng worker`` (the CLI calls :func:`run_worker`), or
``python -m blissng.workflows --redis URL --queue NAME``.
"""

from __future__ import annotations

import functools
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ._settings import DEFAULT_QUEUE, celery_urls

TASK_NAME = "blissng.workflows.execute_graph"
WORKER_READY_LINE = "blissng workflow worker ready"


def _execute_graph(
    graph: Mapping[str, Any],
    inputs: Sequence[Mapping[str, Any]] = (),
    job_id: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Any:
    from ._runner import execute_graph

    return execute_graph(graph, inputs, job_id, options)


@functools.cache
def celery_app(redis_url: str, result_expires: float = 24 * 3600) -> Any:
    """The Celery app on ``redis_url`` (one per URL and process; its clients are thread-safe)."""
    from celery import Celery

    from ._serialization import NAME, register

    register()
    url = celery_urls(redis_url)
    app = Celery("blissng", broker=url, backend=url, set_as_current=False)
    app.conf.update(
        task_serializer=NAME,
        result_serializer=NAME,
        accept_content=[NAME, "json"],
        result_accept_content=[NAME, "json"],
        task_track_started=True,
        task_default_queue=DEFAULT_QUEUE,
        result_expires=int(result_expires),
        worker_prefetch_multiplier=1,  # a long fit must not hold the next job hostage
        task_acks_late=False,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    app.task(name=TASK_NAME)(_execute_graph)
    return app


def run_worker(
    redis_url: str,
    queue: str = DEFAULT_QUEUE,
    concurrency: int = 2,
    hostname: str | None = None,
    loglevel: str = "WARNING",
) -> None:
    """Run a Celery worker for blissng's jobs in this process, until it is stopped (SIGTERM or
    Ctrl-C: a warm shutdown that lets running jobs end). Prints ``WORKER_READY_LINE`` when
    ready."""
    from celery.signals import worker_ready

    from ._extra import require_workflows_extra

    require_workflows_extra("celery")
    import ewoks  # noqa: F401 - imported once here; the pool processes fork warm

    app = celery_app(redis_url)
    name = hostname or f"blissng-{queue}@{socket.gethostname()}"

    @worker_ready.connect(weak=False)
    def _announce(**_: Any) -> None:
        print(f"{WORKER_READY_LINE} {name}", flush=True)

    app.worker_main(
        [
            "worker",
            "--queues", queue,
            "--pool", "prefork",
            "--concurrency", str(concurrency),
            "--hostname", name,
            "--loglevel", loglevel,
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        ]
    )  # fmt: skip
    sys.stdout.flush()
