"""The ``shell`` subcommand (``blissng shell``, delegated here by :mod:`blissng.cli`).

It lives in the web layer because it talks to the server's web app (or starts one).

``blissng shell SESSION`` attaches this terminal to a console of the running server (URL and
token from the server's connection file, or ``--url``/``--token``/$BLISSNG_URL/$BLISSNG_TOKEN).
``--standalone`` first starts a web app in this process (sessions from ``--config DIR``, or an
empty session) on a private unix socket, then attaches to it: the same console, no server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from blissng.shell import RemoteShellError, attach


def state_base() -> Path:
    """Where the servers' state directories are (``$XDG_STATE_HOME/blissng``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "blissng"


def find_connection_file() -> Path:
    """The connection file (URL + token) of the one running server of this user.

    ``blissng serve``/``demo`` write ``STATE_DIR/web.json`` (mode 0600) while they run.
    """
    import json

    candidates = []
    for path in sorted(state_base().glob("*/web.json")):
        try:
            pid = int(json.loads(path.read_text()).get("pid", 0))
            os.kill(pid, 0)
        except (OSError, ValueError):
            continue  # unreadable, or left by a server that died
        candidates.append(path)
    if not candidates:
        raise FileNotFoundError(
            f"no running blissng server found (no live {state_base()}/*/web.json): start one "
            "with `blissng serve`/`blissng demo`, or give --url and --token"
        )
    if len(candidates) > 1:
        listed = ", ".join(str(p) for p in candidates)
        raise FileNotFoundError(
            f"several blissng servers are running ({listed}): choose one with --connection-file"
        )
    return candidates[0]


def add_parser(commands: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Add ``shell`` to the ``blissng`` subcommands (``commands`` from add_subparsers)."""
    parser = commands.add_parser(
        "shell",
        parents=list(parents),
        help="attach this terminal to a session of a running server",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    configure(parser)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", help="the session to attach to")
    parser.add_argument(
        "--url",
        default=os.environ.get("BLISSNG_URL"),
        help="the server (http://host:port or unix:/path); default: $BLISSNG_URL or the "
        "running server's connection file",
    )
    parser.add_argument("--token", default=os.environ.get("BLISSNG_TOKEN"), help="its token")
    parser.add_argument("--console", help="reattach to this console id")
    parser.add_argument("--view", action="store_true", help="watch read-only")
    parser.add_argument(
        "--view-key",
        metavar="KEY",
        help="watch --console ID with a watch link's key instead of the token (implies --view)",
    )
    parser.add_argument(
        "--connection-file",
        type=Path,
        default=None,
        help="the server's web.json (default: the one running server's, found under "
        f"{state_base()})",
    )
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="start a web app with the session in this process first (no server needed)",
    )
    parser.add_argument(
        "--config", type=Path, help="with --standalone: the configuration directory"
    )


def run(args: argparse.Namespace) -> int:
    """The ``shell`` command; returns the exit code."""
    mode = "view" if args.view or args.view_key else "control"
    try:
        if args.standalone:
            return anyio.run(_standalone, args, mode)
        url, token = args.url, args.token
        if url is None:
            from ._uvicorn_serving import read_connection_file

            info = read_connection_file(args.connection_file or find_connection_file())
            url, token = info["url"], token or info.get("token")
        return anyio.run(
            lambda: attach(
                url,
                args.session,
                token=None if args.view_key else token,
                console=args.console,
                mode=mode,
                view_key=args.view_key,
            )
        )
    except (RemoteShellError, FileNotFoundError) as exc:
        print(f"blissng shell: {exc}")
        return 2


async def _standalone(args: argparse.Namespace, mode: str) -> int:
    from blissng.shell import ShellHub, SimpleSession

    from ._app import create_app
    from ._security import WebSecurity
    from ._uvicorn_serving import serve_web

    session: Any
    if args.config is not None:
        from blissng.config import Config
        from blissng.session import Session

        session = Session(args.session, config=Config(args.config))
    else:
        session = SimpleSession(args.session)
    security = WebSecurity.create()
    with tempfile.TemporaryDirectory(prefix="blissng-shell-") as tmp:
        socket_path = str(Path(tmp) / "web.sock")
        app = create_app(ShellHub(), security=security, sessions=[session])
        async with anyio.create_task_group() as tg:
            await tg.start(
                lambda task_status: serve_web(app, uds=socket_path, task_status=task_status)
            )
            try:
                return await attach(
                    f"unix:{socket_path}", args.session, token=security.token, mode=mode
                )
            finally:
                tg.cancel_scope.cancel()
    return 0


def shell_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="blissng shell")
    configure(parser)
    with contextlib.suppress(KeyboardInterrupt):
        return run(parser.parse_args(argv))
    return 130
