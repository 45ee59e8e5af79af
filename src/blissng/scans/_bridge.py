"""One implementation, two ways to call it: ``await ascan(...)`` and, blocking, ``ascan(...)``.

Consoles run user code in worker threads (``anyio.to_thread.run_sync``), so that a
``time.sleep`` or a plain ``def align(): ascan(...)`` never freezes the event loop. Scan and
motor commands are written once, as coroutine functions, and decorated with
:func:`command`. The wrapper looks at where it is called from:

- on the event loop's thread (async code, ``await`` at the prompt): it returns the coroutine,
  so the caller awaits it;
- in a worker thread started by anyio (``anyio.to_thread.run_sync``): it runs the coroutine on
  the event loop with ``anyio.from_thread.run`` and blocks the thread until it is done. The
  coroutine runs inside the worker's host task's cancel scope, so cancelling the console
  command (Ctrl-C) cancels the scan;
- in any other thread: it uses the event loop of the current
  :class:`~blissng.scans.ScanContext` (``ctx.loop``: a session's commands carry
  their session's loop; a thread started with the command's context,
  ``threading.Thread(target=contextvars.copy_context().run, args=(f,))``, has it too), else
  it fails with a message saying what to do. There is no process-wide loop: two servers in
  one process keep their commands apart.

The undecorated coroutine function stays reachable as ``cmd.aio`` for async code that wants
to be explicit.

Interrupting user code (Ctrl-C)
    Cancelling the command's scope stops what awaits (a scan's tasks, a blocked
    :func:`run_blocking`), but a worker thread running pure Python (``while True: x += 1``)
    only notices an exception. A :class:`ThreadInterrupter` runs the command's code in its
    thread and, on :meth:`~ThreadInterrupter.interrupt`, raises ``KeyboardInterrupt`` there
    (CPython's ``PyThreadState_SetAsyncExc``, at the next bytecode), wakes its interruptible
    ``time.sleep`` (:func:`routed_sleep`) at once, and never injects while the thread waits
    on the event loop (the scope's cancellation wakes that wait, which then raises
    ``KeyboardInterrupt`` itself). So user code sees one exception, ``KeyboardInterrupt``, as
    in BLISS, wherever Ctrl-C finds it. Threads that no interrupter runs get
    :class:`~blissng.errors.Aborted` instead (a BaseException, like KeyboardInterrupt, so that
    ``except Exception`` does not swallow an abort; not KeyboardInterrupt itself, which
    asyncio re-raises out of the loop). Why: docs/decisions/0004-interrupting-user-threads.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import ctypes
import functools
import inspect
import math
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

from blissng.errors import Aborted, BlissngError

from ._context import current_context
from ._hop import run_from_thread

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class CommandCalledWithoutLoop(BlissngError, RuntimeError):
    """A blocking command was called from a thread that has no way back to an event loop."""


def on_event_loop_thread() -> bool:
    """True when called on a thread that runs an asyncio event loop right now."""
    # asyncio internals: its own fast check (no exception raised and caught on every device
    # call, as get_running_loop would)
    return asyncio._get_running_loop() is not None


def run_blocking(func: Callable[P, Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T:
    """Run ``func(*args, **kwargs)`` on the event loop from a worker thread; block until done."""

    async def call() -> T:
        # The coroutine joins the cancel scope of the thread's host (the command's) when it
        # starts. anyio delivers a cancellation only to tasks in the scope when it is
        # cancelled: one that joins a scope cancelled just before (Ctrl-C while the thread
        # was on its way here) would wait for a delivery that never comes, spinning on the
        # loop. Its first step either sees the cancellation here or is in the scope for it.
        # (run_from_thread makes the same check where the task joins the scope.)
        if anyio.current_effective_deadline() == -math.inf:
            raise anyio.get_cancelled_exc_class()(f"{name} cancelled before it started")
        return await func(*args, **kwargs)

    name = getattr(func, "__name__", "command")
    start = functools.partial(func, *args, **kwargs)
    interrupter = current_interrupter.get()
    if interrupter is not None and not interrupter.runs_here():
        interrupter = None
    try:
        try:
            if interrupter is None:
                return run_from_thread(start, name)
            interrupter.begin_wait()  # the scope's cancellation wakes this wait
            try:
                return run_from_thread(start, name)
            finally:
                interrupter.end_wait()
        except anyio.NoEventLoopError:
            token = current_context().loop
            if token is None:
                raise CommandCalledWithoutLoop(
                    f"{getattr(func, '__name__', func)}() was called from a thread that is not "
                    "an anyio worker thread and carries no session's context: use `await` in "
                    "async code, run the code through anyio.to_thread.run_sync, or start the "
                    "thread with the command's context (threading.Thread(target="
                    "contextvars.copy_context().run, args=(func,)))"
                ) from None
            return anyio.from_thread.run(call, token=token)
    except (concurrent.futures.CancelledError, asyncio.CancelledError):
        # The command was cancelled on the loop (Ctrl-C): the thread stops here too.
        if interrupter is not None:
            raise KeyboardInterrupt(f"{name} aborted") from None
        raise Aborted(f"{name} cancelled") from None


def command(func: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Any]:
    """Make a coroutine function callable from async code and, blocking, from worker threads.

    See the module docstring. The result of the call on the loop thread is the coroutine
    (await it); in a worker thread it is the coroutine's result.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        if on_event_loop_thread():
            return func(*args, **kwargs)
        return run_blocking(func, *args, **kwargs)

    wrapper.aio = func  # type: ignore[attr-defined]
    wrapper.__blissng_command__ = True  # type: ignore[attr-defined]
    return wrapper


PRINTS_ITS_RESULT = "__blissng_prints_result__"


def prints_its_result(func: F) -> F:
    """Mark a command that prints its result (``wa()``: a table, returning the positions):
    typed as a console's whole input, its value is not shown again as ``Out [n]: {...}``
    (BLISS's ``wa()`` shows the table alone). ``p = wa(); p`` still shows the value."""
    setattr(func, PRINTS_ITS_RESULT, True)
    return func


def is_coroutine_function(func: Any) -> bool:
    """``inspect.iscoroutinefunction`` that also recognises :func:`command` wrappers and the
    devices' synchronous facade (they return a coroutine when called on the event loop)."""
    return inspect.iscoroutinefunction(getattr(func, "aio", func))


# ---------------------------------------------------------------------- interrupting threads

_original_sleep = time.sleep


class ThreadInterrupter:
    """Runs one command's code in the current (worker) thread and interrupts it from another.

    :meth:`interrupt` raises ``KeyboardInterrupt`` in that thread only while it runs the
    command's code (never in anyio's worker loop after the code returned), wakes
    :meth:`sleep` at once, and leaves a thread that waits on the event loop (:meth:`waiting`)
    to the cancellation of its scope.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread_id: int | None = None
        self._injected = False
        self._wakeup = threading.Event()
        self._waiting = 0  # in our sleep or on the event loop: no injection

    @property
    def interrupted(self) -> bool:
        return self._wakeup.is_set()

    def run(self, func: Callable[[], T]) -> T:
        """Call ``func`` here, interruptible; raises what it raises (KeyboardInterrupt too)."""
        with self._lock:
            if self._wakeup.is_set():
                raise KeyboardInterrupt("interrupted before it started")
            self._thread_id = threading.get_ident()
            self._injected = False
        try:
            return func()
        finally:
            self._disarm()

    def _disarm(self) -> None:
        while True:
            try:
                with self._lock:
                    thread_id, self._thread_id = self._thread_id, None
                    if self._injected and thread_id is not None:
                        # Clear an exception that was set but not yet raised.
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)
                        self._injected = False
                return
            except KeyboardInterrupt:  # the pending one landed here: try again
                continue

    def interrupt(self) -> bool:
        """Ctrl-C: True if an exception was raised in the running thread now."""
        self._wakeup.set()
        with self._lock:
            if self._thread_id is None or self._injected or self._waiting:
                return False
            count = ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self._thread_id), ctypes.py_object(KeyboardInterrupt)
            )
            self._injected = count == 1
            return self._injected

    def runs_here(self) -> bool:
        return self._thread_id == threading.get_ident()

    def begin_wait(self) -> None:
        """The thread blocks on something an interrupt wakes by other means (until
        :meth:`end_wait`): no exception is injected meanwhile."""
        with self._lock:
            self._waiting += 1

    def end_wait(self) -> None:
        with self._lock:
            self._waiting -= 1

    def sleep(self, seconds: float) -> None:
        """``time.sleep`` that :meth:`interrupt` wakes at once (raising KeyboardInterrupt)."""
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        self.begin_wait()
        try:
            woken = self._wakeup.wait(seconds)
        finally:
            self.end_wait()
        if woken:
            raise KeyboardInterrupt("sleep interrupted")


current_interrupter: contextvars.ContextVar[ThreadInterrupter | None] = contextvars.ContextVar(
    "blissng_thread_interrupter", default=None
)


def routed_sleep(seconds: float) -> None:
    """``time.sleep`` for the whole process: interruptible in a command's own thread."""
    interrupter = current_interrupter.get()
    if interrupter is not None and interrupter.runs_here():
        interrupter.sleep(seconds)
    else:
        _original_sleep(seconds)
