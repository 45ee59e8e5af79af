"""Run one Ewoks graph in a worker process (a local worker or a Celery worker).

The same function serves both executors so a workflow behaves the same wherever it runs: its
failure becomes a :class:`JobFailed` that names the node, and nothing from ewoks needs to be
importable on the client to understand it.
"""

from __future__ import annotations

import ast
import re
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import JobFailed

# ewokscore: "Execution failed for ewoks task 'label' (id: 'node', task: 'module.func'): msg"
_NODE_IN_MESSAGE = re.compile(r"\(id: (?P<node>.+?), task: (?P<task>.+?)\): ")


def execute_graph(
    graph: Mapping[str, Any],
    inputs: Sequence[Mapping[str, Any]] = (),
    job_id: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """``ewoks.execute_graph`` with blissng's error translation. Runs in the worker process."""
    import ewoks

    execinfo = {"job_id": job_id} if job_id else None
    try:
        return ewoks.execute_graph(
            dict(graph), inputs=list(inputs), execinfo=execinfo, **dict(options or {})
        )
    except Exception as exc:
        raise failure_from(exc, job_id) from None


def failure_from(exc: BaseException, job_id: str | None = None) -> JobFailed:
    """A picklable :class:`JobFailed` naming the failing node, from what ewoks raised."""
    node = task = None
    match = _NODE_IN_MESSAGE.search(str(exc))
    if match:
        node = _literal(match["node"])
        task = _literal(match["task"])
    cause = exc.__cause__ if (node is not None and exc.__cause__ is not None) else exc
    error = f"{type(cause).__name__}: {cause}"
    if node is not None:
        message = f"node {node!r} ({task}) failed: {error}"
    else:
        message = f"workflow failed: {error}"
    remote = "".join(traceback.format_exception(cause))
    return JobFailed(message, node, type(cause).__name__, remote, job_id)


def _literal(text: str) -> str:
    try:
        return str(ast.literal_eval(text))
    except (ValueError, SyntaxError):
        return text
