"""Serving the web app from a process's event loop, and telling clients where it is.

The server (``blissng serve``/``demo``) runs uvicorn inside its own task group
(:func:`serve_web`) and writes a connection file (URL + token, readable by the user only) that
``blissng shell SESSION`` reads, so a local user attaches without copying the token.
Binding anything but loopback warns loudly: the token is then all that protects a Python
prompt on the beamline.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import uvicorn

from .security import WebSecurity, is_loopback

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765
MAX_WEBSOCKET_MESSAGE = 2 * 1024 * 1024  # bytes; the app closes at 1 MiB of text with a reason


def freeze_heap() -> None:
    """Move every object alive now out of the garbage collector's reach (``gc.freeze``).

    Call once the server has loaded (configuration, sessions, their imports): a full
    collection over that heap takes hundreds of milliseconds on the event loop (measured: 410
    ms, stalling every console's echo); objects made later are still collected.
    """
    import gc

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
    )
    server = uvicorn.Server(config)
    # The process owns SIGINT/SIGTERM (the server's shutdown order), not uvicorn.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    finished = anyio.Event()

    async def run() -> None:
        with anyio.CancelScope(shield=True):  # stopped by should_exit: a graceful shutdown
            try:
                await server.serve()
            finally:
                finished.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        while not server.started:
            if finished.is_set():
                raise RuntimeError(f"the web server could not start on {uds or f'{host}:{port}'}")
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


def security_from_args(args: Any) -> WebSecurity:
    return WebSecurity.create(
        token=os.environ.get("BLISSNG_TOKEN") or None,
        allowed_origins=getattr(args, "allow_origin", ()) or (),
        allowed_hosts=getattr(args, "allow_host", ()) or (),
    )


async def run_web_shell(
    sessions: Sequence[Any],
    *,
    args: Any,
    state_dir: Path,
    data_url: str | None = None,
    routes: Sequence[Any] = (),
    hub: Any = None,
    task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Everything ``blissng serve``/``demo`` need for the web shell, in one task:

    consoles for ``sessions`` (started ``Session`` objects), the app (with the server's
    ``routes``), uvicorn on ``args.host``/``args.port`` (see :func:`add_web_options`), the
    connection file ``state_dir/web.json`` for ``blissng shell``, and the URL with its token
    printed. Reports the URL; runs until cancelled::

        url = await tg.start(functools.partial(run_web_shell, sessions, args=args,
                                               state_dir=state_dir, data_url=urls.data))
    """
    from blissng.shell.consoles import ShellHub

    from .app import create_app, describe

    security = security_from_args(args)
    hub = hub if hub is not None else ShellHub(log_dir=state_dir / "logs")
    async with contextlib.AsyncExitStack() as stack:
        if not hub.running:
            await stack.enter_async_context(hub)
        for session in sessions:
            await hub.add_session(session)
        app = create_app(hub, security=security, routes=routes, data_url=data_url)
        freeze_heap()  # everything is loaded: keep full collections off the event loop
        host = getattr(args, "host", "127.0.0.1")
        async with anyio.create_task_group() as tg:
            port = await tg.start(
                functools.partial(serve_web, app, host=host, port=getattr(args, "port", 0))
            )
            url = describe(security, host, port)
            local = f"http://127.0.0.1:{port}" if host in ("0.0.0.0", "::") else url.split("/?")[0]
            connection_file = state_dir / "web.json"
            await anyio.to_thread.run_sync(write_connection_file, connection_file, local, security)
            stack.callback(connection_file.unlink, missing_ok=True)
            print(f"web shell: {url}", flush=True)
            log.info("web shell on %s (connection file %s)", url.split("?")[0], connection_file)
            task_status.started(url)
