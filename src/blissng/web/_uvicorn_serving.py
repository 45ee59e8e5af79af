"""Serving the web app from a process's event loop, and telling clients where it is.

The server (``blissng serve``/``demo``) runs uvicorn inside its own task group
(:func:`serve_web`) and writes a connection file (URL + token, readable by the user only) that
``blissng shell SESSION`` reads, so a local user attaches without copying the token.
Binding anything but loopback warns loudly: the token is then all that protects a Python
prompt on the beamline.

:func:`web_runner` is what a :class:`~blissng.session.Server` runs as its web app: the
consoles and plots of its sessions with the API (:mod:`blissng.web._api`) on one app.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from blissng.threads import run_in_thread

from ._limits import closing_silent_connections, quiet_accept_errors
from ._security import WebSecurity, is_loopback

if TYPE_CHECKING:
    from blissng.session import Server

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765
# Connections waiting to be accepted; also how many accepts asyncio tries in one go, each
# logged when descriptors run out (uvicorn's 2,048 made that thousands of lines a second).
LISTEN_BACKLOG = 128
MAX_WEBSOCKET_MESSAGE = 2 * 1024 * 1024  # bytes; the app closes at 1 MiB of text with a reason


def freeze_heap() -> None:
    """Move every object alive now out of the garbage collector's reach (``gc.freeze``).

    Call once the server has loaded (configuration, sessions, their imports): a full
    collection over that heap takes hundreds of milliseconds on the event loop (measured: 410
    ms, stalling every console's echo); objects made later are still collected.
    """
    import gc

    from blissng.health import expected_stall

    with expected_stall("one full garbage collection of the loaded server (gc.freeze)"):
        gc.collect()
        gc.freeze()


def exposure_warning(host: str) -> str | None:
    """The loud warning for a non-loopback bind (None for loopback)."""
    if is_loopback(host):
        return None
    return (
        "\n" + "!" * 78 + "\n"
        f"!!! WARNING: the web shell listens on {host}: anyone who can reach this machine\n"
        "!!! and obtains the token gets a Python prompt on the beamline (no TLS here).\n"
        "!!! Prefer the default 127.0.0.1 and an SSH tunnel, or a TLS reverse proxy.\n" + "!" * 78
    )


def write_connection_file(path: Path, url: str, security: WebSecurity) -> None:
    """``{"url": ..., "token": ...}``, created with mode 0600 (the token is a password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump({"url": url, "token": security.token, "pid": os.getpid()}, file)


def read_connection_file(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no running blissng server found ({path} is missing): start one with "
            "`blissng serve`/`blissng demo`, or give --url and --token"
        ) from None
    return data


class _QuietServer(uvicorn.Server):
    """uvicorn's server, woken once a second instead of ten times at rest.

    uvicorn's main loop ticks every 0.1 s to refresh its Date header (once a second) and to
    see ``should_exit``; here it ticks once a second, and :attr:`exit` ends it at once.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.exit = anyio.Event()

    async def main_loop(self) -> None:
        counter = 0  # uvicorn refreshes the Date header on the ticks it numbers 0, 10, 20...
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864_000
            with anyio.move_on_after(1.0):
                await self.exit.wait()


async def serve_web(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    uds: str | None = None,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run uvicorn on the current event loop until cancelled; reports the bound port."""
    warning = exposure_warning(host) if uds is None else None
    if warning:
        print(warning, file=sys.stderr, flush=True)
        log.warning("web shell exposed on %s", host)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        uds=uds,
        log_level="warning",
        lifespan="on",
        ws_max_size=MAX_WEBSOCKET_MESSAGE,
        backlog=LISTEN_BACKLOG,
        http=closing_silent_connections(AutoHTTPProtocol),
    )
    server = _QuietServer(config)
    # The process owns SIGINT/SIGTERM (the server's shutdown order), not uvicorn.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    finished = anyio.Event()

    async def run() -> None:
        with anyio.CancelScope(shield=True):  # stopped by should_exit: a graceful shutdown
            try:
                await server.serve()
            finally:
                finished.set()

    with quiet_accept_errors():
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            while not server.started:
                if finished.is_set():
                    raise RuntimeError(
                        f"the web server could not start on {uds or f'{host}:{port}'}"
                    )
                await anyio.sleep(0.01)
            bound = port
            for listener in getattr(server, "servers", []):
                for sock in listener.sockets:
                    name = sock.getsockname()
                    if isinstance(name, tuple):
                        bound = name[1]
            task_status.started(bound)
            try:
                await anyio.sleep_forever()
            finally:
                server.should_exit = True
                server.exit.set()
                with anyio.CancelScope(shield=True):
                    with anyio.move_on_after(10):
                        await finished.wait()
                    server.force_exit = True


def add_web_options(parser: Any) -> None:
    """``--host``, ``--port``, ``--allow-origin``, ``--allow-host`` for ``serve``/``demo``."""
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address of the web shell (default 127.0.0.1; anything else warns loudly)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("BLISSNG_WEB_PORT", DEFAULT_PORT)),
        help=f"its port (default $BLISSNG_WEB_PORT or {DEFAULT_PORT}; 0: any free port)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="URL",
        help="a web GUI allowed to embed the consoles (repeatable), e.g. https://gui.example.org",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a name this server is reached by besides localhost (repeatable; '*': any)",
    )


@dataclasses.dataclass(frozen=True)
class WebOptions:
    """Where the web app listens and whom it lets in: ``blissng serve``'s web options
    (:func:`add_web_options`, read back by :meth:`from_args`)."""

    host: str = "127.0.0.1"
    port: int = 0
    allow_origin: tuple[str, ...] = ()
    allow_host: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> WebOptions:
        """The options :func:`add_web_options` added to a parser, once parsed."""
        return cls(args.host, args.port, tuple(args.allow_origin), tuple(args.allow_host))

    def security(self) -> WebSecurity:
        """The token (``$BLISSNG_TOKEN`` or a new one) and the origins and hosts let in."""
        return WebSecurity.create(
            token=os.environ.get("BLISSNG_TOKEN") or None,
            allowed_origins=self.allow_origin,
            allowed_hosts=self.allow_host,
        )


async def run_web_shell(
    sessions: Sequence[Any],
    *,
    options: WebOptions,
    state_dir: Path,
    data_url: str | None = None,
    routes: Sequence[Any] = (),
    hub: Any = None,
    task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Everything ``blissng serve``/``demo`` need for the web shell, in one task:

    consoles for ``sessions`` (started ``Session`` objects), the app (with the server's
    ``routes``), uvicorn on ``options.host``/``options.port``, the
    connection file ``state_dir/web.json`` for ``blissng shell``, and the URL with its token
    printed. Reports the URL; runs until cancelled::

        url = await tg.start(functools.partial(run_web_shell, sessions, options=options,
                                               state_dir=state_dir, data_url=urls.data))
    """
    from blissng.shell import ShellHub

    from ._app import create_app, describe

    security = options.security()
    hub = hub if hub is not None else ShellHub(log_dir=state_dir / "logs")
    async with contextlib.AsyncExitStack() as stack:
        if not hub.running:
            await stack.enter_async_context(hub)
        for session in sessions:
            await hub.add_session(session)
        app = create_app(hub, security=security, routes=routes, data_url=data_url)
        freeze_heap()  # everything is loaded: keep full collections off the event loop
        host = options.host
        async with anyio.create_task_group() as tg:
            port = await tg.start(functools.partial(serve_web, app, host=host, port=options.port))
            url = describe(security, host, port)
            local = f"http://127.0.0.1:{port}" if host in ("0.0.0.0", "::") else url.split("/?")[0]
            connection_file = state_dir / "web.json"
            await run_in_thread(write_connection_file, connection_file, local, security)
            stack.callback(connection_file.unlink, missing_ok=True)
            print(f"web shell: {url}", flush=True)
            log.info("web shell on %s (connection file %s)", url.split("?")[0], connection_file)
            task_status.started(url)


# ---------------------------------------------------------------------------- a server's web app


def web_runner(options: WebOptions) -> Callable[..., Coroutine[Any, Any, None]]:
    """What a ``blissng.session.Server`` runs as its web app: the web shell's consoles and
    plots for the server's sessions, this API on the same Starlette app, uvicorn on
    ``options``, and the connection file ``<state_dir>/web.json``. Reports the URL with its
    token."""
    _import_for_serving()

    async def run(server: Server, *, task_status: anyio.abc.TaskStatus[str]) -> None:
        from blissng.shell import ShellHub

        from ._api import Api, api_routes  # here: `blissng shell` imports this module, not the API

        listening = options
        if options.port == DEFAULT_PORT and _port_busy(options.host, DEFAULT_PORT):
            # Another server (or a test) has the default port: any free one, and say which
            # (clients read the connection file, not the port).
            log.warning("port %d is busy: the web shell takes a free port", DEFAULT_PORT)
            listening = dataclasses.replace(options, port=0)

        api = Api(server)
        routes = api_routes(api)
        if server.hub is None:  # the CLI may run the hub already (for this terminal's console)
            server.hub = ShellHub(log_dir=server.state_dir / "logs")
        assert isinstance(server.hub, ShellHub), "the web shell serves a ShellHub's consoles"
        try:
            await run_web_shell(
                list(server.sessions.values()),
                hub=server.hub,
                options=listening,
                state_dir=server.state_dir,
                data_url=server.redis.data if server.redis is not None else None,
                routes=routes,
                task_status=task_status,
            )
        finally:
            for unhook in api.unhooks:
                unhook()

    return run


def _import_for_serving() -> None:
    """Import what serving imports lazily, now, before the server starts its loop monitor:
    importing it on the loop later holds the loop for seconds on a loaded machine
    (prompt_toolkit, ptpython, pygments, uvicorn's protocols), reported at every start."""
    for name in (
        "uvicorn.lifespan.on",
        "uvicorn.protocols.http.auto",
        "uvicorn.protocols.websockets.auto",
        "prompt_toolkit.input.posix_pipe",
        "prompt_toolkit.key_binding.bindings.search",
        "blissng.web._app",  # and with it the shell's consoles (ShellHub)
        "blissng.web._api",
    ):
        importlib.import_module(name)
    # ptpython colours the prompt with pygments, whose lexer compiles its regular expressions
    # the first time one is made (~100 ms of CPU): at the first console's prompt, otherwise.
    from ptpython.style import get_all_code_styles
    from pygments.lexers import PythonLexer

    PythonLexer()
    get_all_code_styles()  # imports every pygments style: ptpython lists them per console


def _port_busy(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False
