"""A command running in a session: owned by the session, not by the console that typed it.

A console submits user code to its session (``Session.submit``) and gets a
:class:`RunningCommand`. The command runs in the session's task group, so a console that goes
away (a network blip, a closed tab) does not abort it; the console may reattach and ``wait``
again. ``cancel()`` (Ctrl-C) cancels the command's scope: the scan it runs aborts, and a
worker thread running plain user code gets :class:`~blissng.scans.bridge.CommandCancelled`
raised in it (at once if it waits on a command, at its next Python instruction otherwise).
"""

from __future__ import annotations

import ctypes
import itertools
import threading
import time
from typing import Any

import anyio

from blissng.scans.bridge import CommandCancelled

_ids = itertools.count(1)


class RunningCommand:
    """Handle of one submitted command: ``await cmd.wait()``, ``cmd.cancel()``, ``cmd.state``."""

    def __init__(self, text: str) -> None:
        self.id = next(_ids)
        self.text = text
        self.state = "pending"  # pending, running, done, failed, cancelled
        self.result: Any = None
        self.error: BaseException | None = None
        self.start_time = time.time()
        self.end_time: float | None = None
        self.scope = anyio.CancelScope()
        self._done = anyio.Event()
        self._thread_id: int | None = None
        self._thread_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<RunningCommand {self.id} {self.text!r} {self.state}>"

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        """Abort the command (Ctrl-C). Safe to call from the event loop thread only."""
        if self.done:
            return
        self.scope.cancel()
        with self._thread_lock:
            thread_id = self._thread_id
            if thread_id is not None:
                # Interrupt plain Python code in the worker (a loop, a time.sleep between
                # commands); a thread blocked on a command is woken by the scope's cancel.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(thread_id), ctypes.py_object(CommandCancelled)
                )

    async def wait(self) -> Any:
        """Wait for the end; return the result or raise the command's error.

        A cancelled command raises :class:`CommandCancelled`.
        """
        await self._done.wait()
        if self.error is not None:
            raise self.error
        return self.result

    # -- used by the session ----------------------------------------------------------------
    def _enter_thread(self) -> None:
        with self._thread_lock:
            self._thread_id = threading.get_ident()

    def _leave_thread(self) -> None:
        with self._thread_lock:
            if self._thread_id is not None:
                # Drop an interruption that arrived too late to be raised in user code.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread_id), None)
            self._thread_id = None

    def _finish(self, state: str, result: Any = None, error: BaseException | None = None) -> None:
        self.state = state
        self.result = result
        self.error = error
        self.end_time = time.time()
        self._done.set()
