"""One call from an anyio worker thread to the event loop, with the least work per call.

Every blocking device call at a console (``m1.position = 0``, ``m1.move(2)``, a counter's
``read()``; :func:`blissng.session.synchronous`) is one trip from the command's worker thread to the
event loop and back. ``anyio.from_thread.run`` makes that trip with a context copy, a
``concurrent.futures.Future`` (a condition variable, a waiter lock per wait), a task chained
to that future by done callbacks and one more turn of the loop to pass the result on: about
50 us of CPU per call on the project's machine, 2.5x the trip itself
(benchmarks/facade.py, docs/devices.md).

:func:`run_from_thread` does the same trip with one lock: the coroutine's task hands its
outcome over and releases the lock as its last step. What anyio's call guarantees is kept:
the task joins the cancel scope of the thread's host task (cancelling the command cancels
the call), a cancellation surfaces as ``concurrent.futures.CancelledError`` in the thread,
the coroutine runs in a copy of the thread's context, ``KeyboardInterrupt`` and
``SystemExit`` raised on the loop still reach the loop. Keeping the scope means using anyio's
own bookkeeping (the thread's token and host scope, the task's state), as its
``run_async_from_thread`` does: when these internals are not what this module knows
(another anyio version or backend), the call goes through ``anyio.from_thread.run``
unchanged, and tests/test_bridge_hop.py says so.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import math
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import anyio
import anyio.from_thread

T = TypeVar("T")

try:  # anyio's bookkeeping of worker threads and tasks (see the module docstring)
    from anyio._backends._asyncio import AsyncIOBackend, TaskState, _task_states
    from anyio._core._eventloop import set_current_async_library, threadlocals
except ImportError:  # pragma: no cover - another anyio: the plain call
    AsyncIOBackend = None  # type: ignore[assignment,misc]


def fast_path_available() -> bool:
    """Whether :func:`run_from_thread` can skip ``anyio.from_thread.run`` with this anyio."""
    return AsyncIOBackend is not None and hasattr(_task_states, "__setitem__")


def _cancelled(scope: Any) -> bool:
    """Whether a cancellation reaches a task in ``scope`` (anyio's check_cancelled walk)."""
    while scope is not None:
        if scope.cancel_called:
            return True
        if scope.shield:
            return False
        scope = scope._parent_scope  # anyio internals (module docstring)
    return False


class _Outcome:
    __slots__ = ("done", "error", "task", "value")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.value: Any = None
        self.error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None


def run_from_thread(func: Callable[[], Coroutine[Any, Any, T]], what: str = "call") -> T:
    """``anyio.from_thread.run(func)``: run ``func()`` on the loop of this anyio worker
    thread, block until it is done, return its result or raise its error (a cancellation as
    ``concurrent.futures.CancelledError``); ``anyio.NoEventLoopError`` outside such a thread.

    A call whose host scope was cancelled before its task joined it ends at once, cancelled
    (``what`` names it in the message): anyio delivers a cancellation to the tasks in a scope
    when it is cancelled, so a task joining it just after (Ctrl-C while the thread was on its
    way here) would wait for a delivery that never comes."""
    token = getattr(threadlocals, "current_token", None) if AsyncIOBackend is not None else None
    if token is None or getattr(token, "backend_class", None) is not AsyncIOBackend:

        async def checked() -> T:
            if anyio.current_effective_deadline() == -math.inf:
                raise anyio.get_cancelled_exc_class()(f"{what} cancelled before it started")
            return await func()

        return anyio.from_thread.run(checked)
    loop: asyncio.AbstractEventLoop = token.native_token
    scope = getattr(threadlocals, "current_cancel_scope", None)
    outcome = _Outcome()

    async def on_loop() -> None:
        task = asyncio.current_task()
        assert task is not None
        if scope is not None:
            _task_states[task] = TaskState(None, scope)
            scope._tasks.add(task)  # anyio internals: the task joins the host's scope
        try:
            if _cancelled(scope):
                raise asyncio.CancelledError(f"{what} cancelled before it started")
            outcome.value = await func()
        except asyncio.CancelledError as exc:
            outcome.error = concurrent.futures.CancelledError(str(exc))
        except (KeyboardInterrupt, SystemExit) as exc:
            outcome.error = exc
            raise  # as a task does: they stop the loop
        except BaseException as exc:
            outcome.error = exc
        finally:
            if scope is not None:
                scope._tasks.discard(task)  # anyio internals, as above
            outcome.done.release()

    context = contextvars.copy_context()
    context.run(set_current_async_library, "asyncio")

    def start() -> None:
        outcome.task = loop.create_task(on_loop(), context=context)

    if loop.is_closed():
        raise anyio.RunFinishedError
    loop.call_soon_threadsafe(start)
    outcome.done.acquire()
    outcome.task = None
    if outcome.error is not None:
        try:
            raise outcome.error
        finally:
            outcome.error = None  # no reference cycle through the traceback
    value: T = outcome.value
    return value


__all__ = ["fast_path_available", "run_from_thread"]
