"""The web: one Starlette app serving the consoles and the plots over websockets, the static
browser client and the JSON API, behind a token and Origin checks.

:func:`create_app` builds the app on a :class:`~blissng.shell.ShellHub` (``routes=
api_routes(Api(server))`` adds the API, described at ``/api/openapi.json``);
:class:`WebSecurity` is its token and allowed origins and hosts; :func:`serve_web` runs it
with uvicorn, :func:`web_runner` is the server's (``blissng serve``/``demo``). ``blissng
shell`` is :func:`shell_main`. :class:`ServerThread` and :class:`ConsoleClient` run the app in a
thread and speak to a console, for tests and benchmarks. docs/webshell.md, docs/server.md.

The face is lazy (PEP 562, a module ``__getattr__``): each name imports its module when it is
first asked for. The app's modules import the shell's consoles (ptpython, prompt_toolkit), the
session layer and uvicorn, half a second together, and ``blissng shell`` (:func:`shell_main`),
which only attaches this terminal to a console over a websocket, must not pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from blissng.faces import lazy_names

if TYPE_CHECKING:  # what the names are, for type checkers; at run time __getattr__ loads them
    from ._api import Api, api_routes
    from ._app import create_app, describe, missing_vendor_files, require_token, shell_routes
    from ._endpoints import ENDPOINTS
    from ._security import COOKIE_NAME, Refused, WebSecurity, new_token
    from ._server_thread import (
        ConsoleClient,
        ServerThread,
        close_reason,
        serve_sessions,
        terminal_text,
    )
    from ._shell_command import shell_main
    from ._uvicorn_serving import (
        WebOptions,
        add_web_options,
        freeze_heap,
        read_connection_file,
        run_web_shell,
        serve_web,
        web_runner,
        write_connection_file,
    )

_MODULES = {  # the private module that defines each name of __all__
    "ENDPOINTS": "._endpoints",
    "Api": "._api",
    "api_routes": "._api",
    "create_app": "._app",
    "describe": "._app",
    "missing_vendor_files": "._app",
    "require_token": "._app",
    "shell_routes": "._app",
    "COOKIE_NAME": "._security",
    "Refused": "._security",
    "WebSecurity": "._security",
    "new_token": "._security",
    "ConsoleClient": "._server_thread",
    "ServerThread": "._server_thread",
    "close_reason": "._server_thread",
    "serve_sessions": "._server_thread",
    "terminal_text": "._server_thread",
    "shell_main": "._shell_command",
    "WebOptions": "._uvicorn_serving",
    "add_web_options": "._uvicorn_serving",
    "freeze_heap": "._uvicorn_serving",
    "read_connection_file": "._uvicorn_serving",
    "run_web_shell": "._uvicorn_serving",
    "serve_web": "._uvicorn_serving",
    "web_runner": "._uvicorn_serving",
    "write_connection_file": "._uvicorn_serving",
}

__all__ = [
    "COOKIE_NAME",
    "ENDPOINTS",
    "Api",
    "ConsoleClient",
    "Refused",
    "ServerThread",
    "WebOptions",
    "WebSecurity",
    "add_web_options",
    "api_routes",
    "close_reason",
    "create_app",
    "describe",
    "freeze_heap",
    "missing_vendor_files",
    "new_token",
    "read_connection_file",
    "require_token",
    "run_web_shell",
    "serve_sessions",
    "serve_web",
    "shell_main",
    "shell_routes",
    "terminal_text",
    "web_runner",
    "write_connection_file",
]


__getattr__, __dir__ = lazy_names(__name__, _MODULES)
