"""The process-wide hooks that commands need, installed once with an undo.

Several consoles, the API and the session itself run user code in one process. Swapping
``sys.stdout`` per command is wrong as soon as two commands run at once, so a single router
replaces ``sys.stdout`` and ``sys.stderr`` for the whole process and looks up, on every
write, the current command's output in a :class:`contextvars.ContextVar`
(:data:`current_output`). Tasks, ``anyio.to_thread`` and ``anyio.from_thread`` inherit the
context, so prints from a command's child tasks and worker threads reach that command's
outputs. Code running outside any command (the server itself) writes to the real streams.
Why: docs/decisions/0005-output-per-console.md.

The same goes for what would read the server's own terminal: ``sys.stdin`` and ``getpass``
refuse inside a command with a clear message; and ``time.sleep`` becomes the interruptible
sleep of :func:`blissng.scans.routed_sleep` (Ctrl-C wakes a command's sleep at once;
anywhere else it is the plain ``time.sleep``).

:func:`process_hooks` installs all of them and undoes them. It counts: the first user (the
server, or a session's command runner when there is no server) installs, the last one
leaving restores what was there before. The routers stay correct when a test harness
swaps ``sys.stdout`` meanwhile: :func:`reroute` (called at each command) puts the router
back on top of whatever stream is current.
"""

from __future__ import annotations

import contextlib
import contextvars
import getpass
import io
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TextIO

from blissng.scans import routed_sleep


class OutputTarget(Protocol):
    """Where a command's output goes; ``write_output`` may be called from any thread."""

    def write_output(self, text: str, *, stream: str) -> None: ...


current_output: contextvars.ContextVar[OutputTarget | None] = contextvars.ContextVar(
    "blissng_command_output", default=None
)


@contextlib.contextmanager
def output_to(target: OutputTarget | None) -> Iterator[None]:
    """Route this context's ``print`` (and that of tasks/threads it starts) to ``target``."""
    token = current_output.set(target)
    try:
        yield
    finally:
        current_output.reset(token)


class RoutedStream(io.TextIOBase):
    """A text stream that writes to the current command, or to ``fallback`` outside one."""

    def __init__(self, fallback: TextIO, stream: str) -> None:
        self._fallback = fallback
        self._stream = stream

    @property
    def fallback(self) -> TextIO:
        return self._fallback

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return "replace"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return current_output.get() is None and self._fallback.isatty()

    def fileno(self) -> int:
        if current_output.get() is not None:
            raise io.UnsupportedOperation("a command's output has no file descriptor")
        return self._fallback.fileno()

    def write(self, text: str) -> int:
        target = current_output.get()
        if target is None:
            return self._fallback.write(text)
        target.write_output(text, stream=self._stream)
        return len(text)

    def flush(self) -> None:
        if current_output.get() is None:
            self._fallback.flush()


class NoCommandInput(io.TextIOBase):
    """``sys.stdin`` for the process: commands have no stdin; the server keeps its own."""

    def __init__(self, fallback: TextIO) -> None:
        self._fallback = fallback

    @property
    def fallback(self) -> TextIO:
        return self._fallback

    def _refuse(self) -> None:
        raise RuntimeError(
            "standard input is not available in a blissng command (input(), pdb, help() and "
            "getpass would read the server's terminal); pass values as arguments instead"
        )

    def readable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return current_output.get() is None and self._fallback.isatty()

    def fileno(self) -> int:
        if current_output.get() is not None:
            self._refuse()
        return self._fallback.fileno()

    def read(self, size: int | None = -1) -> str:
        if current_output.get() is not None:
            self._refuse()
        return self._fallback.read(-1 if size is None else size)

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        if current_output.get() is not None:
            self._refuse()
        return self._fallback.readline(-1 if size is None else size)


def _routed_getpass(prompt: str = "Password: ", stream: TextIO | None = None) -> str:
    """``getpass`` opens /dev/tty directly: refused inside a command."""
    if current_output.get() is not None:
        raise RuntimeError(
            "getpass() is not available in a blissng command (it would read the server's terminal)"
        )
    return _saved["getpass"](prompt, stream)


_lock = threading.Lock()
_users = 0
_saved: dict[str, Any] = {}


def _wrap_streams() -> None:
    if not isinstance(sys.stdout, RoutedStream):
        sys.stdout = RoutedStream(sys.stdout, "stdout")
    if not isinstance(sys.stderr, RoutedStream):
        sys.stderr = RoutedStream(sys.stderr, "stderr")
    if sys.stdin is not None and not isinstance(sys.stdin, NoCommandInput):
        sys.stdin = NoCommandInput(sys.stdin)


def install_process_hooks() -> Callable[[], None]:
    """Install the hooks (the first call does; later ones count); returns the undo."""
    global _users
    with _lock:
        _users += 1
        if _users == 1:
            _saved.update(sleep=time.sleep, getpass=getpass.getpass)
            _wrap_streams()
            time.sleep = routed_sleep  # type: ignore[assignment]
            getpass.getpass = _routed_getpass
    undone = False

    def undo() -> None:
        nonlocal undone
        global _users
        with _lock:
            if undone:
                return
            undone = True
            _users -= 1
            if _users == 0:
                _restore()

    return undo


def _restore() -> None:
    for name in ("stdout", "stderr", "stdin"):
        stream = getattr(sys, name)
        # Only our own wrapper is taken off; a stream someone put on top of it stays (it
        # writes through our router, which passes everything on outside a command).
        while isinstance(stream, RoutedStream | NoCommandInput):
            stream = stream.fallback
            setattr(sys, name, stream)
    if time.sleep is routed_sleep:
        time.sleep = _saved["sleep"]
    if getpass.getpass is _routed_getpass:
        getpass.getpass = _saved["getpass"]
    _saved.clear()


@contextlib.contextmanager
def process_hooks() -> Iterator[None]:
    """The hooks for the duration of the block (counted: see :func:`install_process_hooks`)."""
    undo = install_process_hooks()
    try:
        yield
    finally:
        undo()


def reroute() -> None:
    """Put the routers back on top if something (a test harness) swapped ``sys.stdout``
    since they were installed. Called at the start of every command; no-op when no hooks
    are installed."""
    with _lock:
        if _users:
            _wrap_streams()


def hooks_installed() -> bool:
    return _users > 0
