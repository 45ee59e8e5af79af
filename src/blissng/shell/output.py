"""Routing ``print`` to the console that ran the code.

Several consoles (browser tabs, sessions) run user code in one process. Swapping ``sys.stdout``
per call is wrong as soon as two commands run at once, so a single router replaces
``sys.stdout`` and ``sys.stderr`` once for the whole process and looks up, on every write, the
current console's output in a :class:`contextvars.ContextVar`. Tasks, ``call_later`` callbacks,
``anyio.to_thread`` and ``anyio.from_thread`` inherit the context, so prints from a command's
child tasks and worker threads reach the tab that typed it. Code running outside any console
(the server itself) writes to the real streams.

``sys.stdin`` gets the same treatment: a console has no standard input (its keystrokes belong to
its prompt), so ``input()``, ``pdb`` and friends fail with a clear message instead of reading
the server's own terminal.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import sys
import threading
from collections.abc import Iterator
from typing import Protocol, TextIO


class OutputTarget(Protocol):
    """Where a console's user output goes; ``write`` may be called from any thread."""

    def write_output(self, text: str, *, stream: str) -> None: ...


current_output: contextvars.ContextVar[OutputTarget | None] = contextvars.ContextVar(
    "blissng_console_output", default=None
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
    """A text stream that writes to the current console, or to ``fallback`` outside one."""

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
            raise io.UnsupportedOperation("a console's output has no file descriptor")
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


class NoConsoleInput(io.TextIOBase):
    """``sys.stdin`` for the process: consoles have no stdin; the server keeps its own."""

    def __init__(self, fallback: TextIO) -> None:
        self._fallback = fallback

    @property
    def fallback(self) -> TextIO:
        return self._fallback

    def _refuse(self) -> None:
        raise RuntimeError(
            "standard input is not available in a blissng console (input(), pdb, help() and "
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


_install_lock = threading.Lock()


def install_output_router() -> None:
    """Install the process-wide stdout/stderr/stdin routers (idempotent, thread-safe)."""
    with _install_lock:
        if not isinstance(sys.stdout, RoutedStream):
            sys.stdout = RoutedStream(sys.stdout, "stdout")
        if not isinstance(sys.stderr, RoutedStream):
            sys.stderr = RoutedStream(sys.stderr, "stderr")
        if not isinstance(sys.stdin, NoConsoleInput) and sys.stdin is not None:
            sys.stdin = NoConsoleInput(sys.stdin)
        _patch_getpass()


def _patch_getpass() -> None:
    """``getpass`` opens /dev/tty directly: refuse it inside a console."""
    import getpass

    original = getpass.getpass
    if getattr(original, "_blissng_routed", False):
        return

    def routed_getpass(prompt: str = "Password: ", stream: TextIO | None = None) -> str:
        if current_output.get() is not None:
            raise RuntimeError(
                "getpass() is not available in a blissng console (it would read the "
                "server's terminal)"
            )
        return original(prompt, stream)

    routed_getpass._blissng_routed = True  # type: ignore[attr-defined]
    getpass.getpass = routed_getpass
