"""Interrupting user code that runs in a worker thread.

Cancelling a command's scope stops what awaits (a scan's tasks), but a worker thread running
pure Python (``while True: x += 1``, ``time.sleep(100)``) only notices an exception. CPython's
``PyThreadState_SetAsyncExc`` raises one in another thread at its next bytecode; a blocking C
call (``time.sleep``) sees it when it returns (``time.sleep`` itself is woken by nothing, so a
console also rewrites ``time.sleep`` for user code: see :func:`interruptible_sleep`).

The guard makes sure the exception lands only while that thread runs the console's code, never
in anyio's worker loop after the code returned.
"""

from __future__ import annotations

import contextvars
import ctypes
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


_original_sleep = time.sleep


class CommandInterrupted(Exception):
    """User code was interrupted by Ctrl-C (raised in the worker thread, reported as one line)."""


class ThreadInterrupter:
    """Runs one callable in the current (worker) thread and can interrupt it from another."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread_id: int | None = None
        self._injected = False
        self._wakeup = threading.Event()
        self._sleeping = False  # in our own sleep: the wake-up event interrupts it

    @property
    def interrupted(self) -> bool:
        return self._wakeup.is_set()

    def run(self, func: Callable[[], T]) -> T:
        """Call ``func`` here; a concurrent :meth:`interrupt` raises CommandInterrupted in it."""
        with self._lock:
            self._thread_id = threading.get_ident()
            self._injected = False
            if self._wakeup.is_set():
                self._thread_id = None
                raise CommandInterrupted("interrupted before it started")
        try:
            return func()
        except Exception:
            raise
        except BaseException as exc:  # KeyboardInterrupt, a scan's CommandCancelled, SystemExit
            # Never let a BaseException cross into the event loop (asyncio re-raises
            # KeyboardInterrupt out of run_forever): report it as an ordinary error.
            raise CommandInterrupted(type(exc).__name__) from exc
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
        """Raise KeyboardInterrupt in the thread running :meth:`run`; False if none runs."""
        self._wakeup.set()
        with self._lock:
            if self._thread_id is None or self._injected or self._sleeping:
                return False
            count = ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self._thread_id), ctypes.py_object(KeyboardInterrupt)
            )
            self._injected = count == 1
            return self._injected

    def runs_here(self) -> bool:
        return self._thread_id == threading.get_ident()

    def sleep(self, seconds: float) -> None:
        """``time.sleep`` that Ctrl-C wakes at once (the thread then sees the exception)."""
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        with self._lock:
            self._sleeping = True
        try:
            woken = self._wakeup.wait(seconds)
        finally:
            with self._lock:
                self._sleeping = False
        if woken:
            raise CommandInterrupted("KeyboardInterrupt")


current_interrupter: contextvars.ContextVar[ThreadInterrupter | None] = contextvars.ContextVar(
    "blissng_thread_interrupter", default=None
)


def routed_sleep(seconds: float) -> None:
    """``time.sleep`` for the whole process: interruptible in a console command's thread."""
    interrupter = current_interrupter.get()
    if interrupter is not None and interrupter.runs_here():
        interrupter.sleep(seconds)
    else:
        _original_sleep(seconds)


def install_interruptible_sleep() -> None:
    """Make ``time.sleep`` in console commands wake on Ctrl-C (idempotent)."""
    if time.sleep is not routed_sleep:
        time.sleep = routed_sleep  # type: ignore[assignment]
