"""The code of one local worker process (started with the ``spawn`` method).

A worker imports ewoks once, then runs jobs one at a time, received over its pipe:
``(job_id, graph, inputs, options)`` in; ``("started", t)`` then ``("done", result)`` or
``("failed", JobFailed)`` out. It leads a process group of its own so that cancelling a job
terminates the workflow *and* any process it started (``killpg``), and it exits when its parent
dies (the pipe closes, or its parent id changes while it computes).
"""

from __future__ import annotations

import os
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

PARENT_CHECK_INTERVAL = 1.0


def _exit_with_parent(parent_pid: int) -> None:
    while True:
        time.sleep(PARENT_CHECK_INTERVAL)  # a daemon thread of the worker, not an event loop
        if os.getppid() != parent_pid:
            os._exit(3)


def worker_main(conn: Connection, parent_pid: int) -> None:
    os.setpgrp()
    watcher = threading.Thread(
        target=_exit_with_parent, args=(parent_pid,), name="parent-watch", daemon=True
    )
    watcher.start()
    import ewoks  # noqa: F401 - imported once here, so jobs do not pay for it

    from ._errors import JobFailed
    from ._runner import execute_graph

    conn.send(("ready", os.getpid()))
    while True:
        try:
            job_id, graph, inputs, options = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(("started", time.time()))
        reply: tuple[str, Any]
        try:
            reply = ("done", execute_graph(graph, inputs, job_id, options))
        except JobFailed as failure:
            reply = ("failed", failure)
        except BaseException as exc:
            reply = ("failed", JobFailed(f"workflow failed: {type(exc).__name__}: {exc}"))
        try:
            conn.send(reply)
        except Exception as exc:  # the result does not pickle
            conn.send(("failed", JobFailed(f"the workflow's result cannot be sent back: {exc}")))
