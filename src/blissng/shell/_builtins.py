"""What a console adds to the session namespace, and how its code finds the console.

The builtins every command needs (``last_error()``, ``sleep``, refusals of ``input()``,
interactive ``help()`` and ``breakpoint()``) come with the session's command runner
(:class:`blissng.session.CommandRunner`): they are the same for the API. A console adds ``exit()``
and ``quit()`` (they close it) and makes itself current while its command runs, for code
that wants to know its terminal.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

from ptpython.repl import exit as ptpython_exit

if TYPE_CHECKING:
    from ._console import Console

current_console: contextvars.ContextVar[Console | None] = contextvars.ContextVar(
    "blissng_current_console", default=None
)


def console_builtins() -> dict[str, Any]:
    """Names every console namespace gets (setdefault: a session may override them)."""
    return {"exit": ptpython_exit(), "quit": ptpython_exit()}
