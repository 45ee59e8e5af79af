"""What a console adds to (or takes out of) the session namespace.

BLISS users expect ``last_error()`` and ``sleep``; ``input()``, interactive ``help()`` and
``breakpoint()`` would read the server's own terminal, so they are replaced by versions that
work in a console or that say why they cannot. The functions find their console through a
context variable, so one namespace serves every console of a session.
"""

from __future__ import annotations

import contextvars
import pydoc
import traceback
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ptpython.repl import exit as ptpython_exit

from .interrupt import routed_sleep

if TYPE_CHECKING:
    from .console import Console

current_console: contextvars.ContextVar[Console | None] = contextvars.ContextVar(
    "blissng_current_console", default=None
)

ErrorInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def make_last_error(fallback: Any = None) -> Any:
    """``last_error()`` for a namespace: this console's errors; elsewhere (a command run
    through the server's API) the session's own ``last_error`` when it has one."""

    def last_error_(index: int = -1) -> None:
        console = current_console.get()
        if (console is None or not console.errors) and callable(fallback):
            fallback()
            return
        last_error(index)

    last_error_.__doc__ = last_error.__doc__
    last_error_.__name__ = "last_error"
    return last_error_


def last_error(index: int = -1) -> None:
    """Print the full traceback of the last error of this console (one line was shown)."""
    console = current_console.get()
    if console is None:
        print("last_error() only works in a console")
        return
    if not console.errors:
        print("no error yet in this console")
        return
    etype, value, tb = console.errors[index]
    print("".join(traceback.format_exception(etype, value, _from_user_code(tb))), end="")


def _from_user_code(tb: TracebackType | None) -> TracebackType | None:
    """Drop the console's own frames (anyio, the worker thread) before the typed code."""
    first = tb
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<stdin>":
            return tb
        tb = tb.tb_next
    return first


def console_input(prompt: object = "") -> str:
    """``input()`` in a console: refused with a reason (the keyboard belongs to the prompt)."""
    raise RuntimeError(
        "input() is not available in a blissng console: the server has no terminal to read "
        "and the console's keystrokes belong to its prompt; pass the value as an argument"
    )


def console_breakpoint(*args: Any, **kwargs: Any) -> None:
    """``breakpoint()``/``pdb`` in a console: refused with a reason."""
    raise RuntimeError(
        "breakpoint()/pdb is not available in a blissng console (it would read the "
        "server's terminal); use last_error() after an exception, or debug in a script"
    )


class ConsoleHelp:
    """``help(obj)`` prints the documentation; ``help()`` (interactive) is refused."""

    def __repr__(self) -> str:
        return "Type help(object) for help about object."

    def __call__(self, *args: Any) -> None:
        if not args:
            print("interactive help() is not available in a console: use help(object)")
            return
        renderer = pydoc.plaintext  # type: ignore[attr-defined]
        print(pydoc.render_doc(args[0], renderer=renderer), end="")


def console_builtins() -> dict[str, Any]:
    """Names every console namespace gets (setdefault: a session may override them)."""
    return {
        "last_error": last_error,
        "input": console_input,
        "breakpoint": console_breakpoint,
        "help": ConsoleHelp(),
        "sleep": routed_sleep,
        "exit": ptpython_exit(),
        "quit": ptpython_exit(),
    }
