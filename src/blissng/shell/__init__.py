"""The shell: ptpython consoles on the sessions, and terminals attached to them.

A :class:`ShellHub` holds the consoles of each started session (``await
hub.add_session(session)``); a :class:`Console` is one ptpython prompt of its own whose accepted
lines the session's command runner runs, whoever is attached: a browser tab or ``blissng shell``
over the web app's websocket (:func:`attach`), or this process's own terminal
(:func:`attach_local`). :class:`SimpleSession` is a session without devices for tests and
scripts. docs/webshell.md describes it all.

The face is lazy (PEP 562, a module ``__getattr__``): each name imports its module when it is
first asked for. The consoles' modules import ptpython and prompt_toolkit and
:class:`SimpleSession` imports the session layer (half a second together), and who imports
this face for one light name must not pay for them: ``blissng shell`` (the web layer's shell
command, which only needs :func:`attach`) starts in a tenth of that, and the test client's
:func:`strip_ansi` loads no console.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from blissng.faces import lazy_names

if TYPE_CHECKING:  # what the names are, for type checkers; at run time __getattr__ loads them
    from ._builtins import current_console
    from ._console import Console
    from ._feed import TerminalFeed
    from ._hub import SessionConsoles, ShellHub, TooManyConsoles, UnknownConsole
    from ._log import SessionLog, strip_ansi
    from ._remote import RemoteShellError, attach
    from ._shell_session import ShellSession, SimpleSession
    from ._terminal import ConsoleLog, attach_local, terminal_size

_MODULES = {  # the private module that defines each name of __all__
    "current_console": "._builtins",
    "Console": "._console",
    "TerminalFeed": "._feed",
    "SessionConsoles": "._hub",
    "ShellHub": "._hub",
    "TooManyConsoles": "._hub",
    "UnknownConsole": "._hub",
    "SessionLog": "._log",
    "strip_ansi": "._log",
    "RemoteShellError": "._remote",
    "attach": "._remote",
    "ShellSession": "._shell_session",
    "SimpleSession": "._shell_session",
    "ConsoleLog": "._terminal",
    "attach_local": "._terminal",
    "terminal_size": "._terminal",
}

__all__ = [
    "Console",
    "ConsoleLog",
    "RemoteShellError",
    "SessionConsoles",
    "SessionLog",
    "ShellHub",
    "ShellSession",
    "SimpleSession",
    "TerminalFeed",
    "TooManyConsoles",
    "UnknownConsole",
    "attach",
    "attach_local",
    "current_console",
    "strip_ansi",
    "terminal_size",
]


__getattr__, __dir__ = lazy_names(__name__, _MODULES)
