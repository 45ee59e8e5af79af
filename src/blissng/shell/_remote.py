"""``blissng shell SESSION``: this terminal attached to a console of a running server.

The same console as a browser tab (docs/webshell.md protocol), in a plain terminal: the local
terminal goes to raw mode, keystrokes are sent as ``stdin`` messages, the console's output is
written back, window size changes are sent as ``resize``. The client never opens the
hardware: everything runs in the server. The console survives the client (detach with the
connection, reattach with ``--console ID``); Ctrl-D at an empty prompt closes it.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any
from urllib.parse import urlencode, urlsplit

import anyio
from websockets.asyncio.client import ClientConnection, connect, unix_connect
from websockets.exceptions import ConnectionClosed

from blissng.errors import BlissngError

from ._terminal import follow_size, pump_keys, raw_terminal, terminal_size


class RemoteShellError(BlissngError, RuntimeError):
    """The console could not be reached or was refused (the message says why)."""


def console_url(
    base: str,
    session: str,
    *,
    token: str | None,
    console: str | None,
    mode: str,
    size: tuple[int, int],
    view_key: str | None = None,
) -> tuple[str, str | None]:
    """The websocket URL (and unix socket path, for ``unix:/path`` bases)."""
    params = {"mode": mode, "rows": size[0], "cols": size[1]}
    if token:
        params["token"] = token
    if view_key:
        params["view"] = view_key
    if console:
        params["console"] = console
    query = urlencode(params)
    if base.startswith("unix:"):
        return f"ws://localhost/ws/console/{session}?{query}", base[len("unix:") :]
    parts = urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}/ws/console/{session}?{query}", None


async def _open(url: str, uds: str | None) -> ClientConnection:
    try:
        if uds is not None:
            return await unix_connect(uds, url, max_size=None, open_timeout=10)
        return await connect(url, max_size=None, open_timeout=10)
    except OSError as exc:
        raise RemoteShellError(
            f"cannot reach the blissng server at {url.split('?')[0]}: {exc}"
        ) from exc
    except Exception as exc:  # InvalidStatus (403: token/origin) and friends
        response = getattr(exc, "response", None)
        body = getattr(response, "body", b"") or b""
        reason = body.decode(errors="replace").strip() or str(exc)
        raise RemoteShellError(f"the server refused the console: {reason}") from exc


async def attach(
    base_url: str,
    session: str,
    *,
    token: str | None = None,
    console: str | None = None,
    mode: str = "control",
    stdin_fd: int | None = None,
    stdout_fd: int | None = None,
    view_key: str | None = None,
) -> int:
    """Attach this terminal to ``session``'s console; returns the exit code.

    ``base_url``: ``http://host:port`` (a ``?token=`` in it is used when ``token`` is not
    given: the URL ``run_web_shell`` reports works as is) or ``unix:/path``.
    """
    if token is None and "token=" in base_url:
        from urllib.parse import parse_qs

        token = parse_qs(urlsplit(base_url).query).get("token", [None])[0]
    stdin_fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
    stdout_fd = sys.stdout.fileno() if stdout_fd is None else stdout_fd
    url, uds = console_url(
        base_url,
        session,
        token=token,
        console=console,
        mode=mode,
        size=terminal_size(stdout_fd),
        view_key=view_key,
    )
    ws = await _open(url, uds)
    closed: tuple[int, str] = (1000, "")
    try:
        with raw_terminal(stdin_fd):
            async with anyio.create_task_group() as tg:
                if mode == "control":
                    tg.start_soon(_send_keys, ws, stdin_fd)
                    tg.start_soon(follow_size, functools.partial(_send_size, ws), stdout_fd)
                try:
                    async for data in ws:
                        _handle(json.loads(data), stdout_fd)
                except ConnectionClosed:
                    pass
                if ws.close_code is not None:
                    closed = (ws.close_code, ws.close_reason or "")
                tg.cancel_scope.cancel()
    finally:
        await ws.close()
    code, reason = closed
    if code in (1000, 4410):
        return 0
    os.write(stdout_fd, f"\r\n[console connection closed: {reason or code}]\r\n".encode())
    return 1


def _handle(message: list[Any], stdout_fd: int) -> None:
    if message and message[0] == "stdout":
        data = str(message[1]).encode("utf-8", errors="replace")
        while data:
            written = os.write(stdout_fd, data)
            data = data[written:]


async def _send_keys(ws: ClientConnection, fd: int) -> None:
    async def send(text: str) -> None:
        await ws.send(json.dumps(["stdin", text]))

    await pump_keys(send, fd)
    await ws.close()  # stdin closed: leave, the console goes on


async def _send_size(ws: ClientConnection, rows: int, columns: int) -> None:
    await ws.send(json.dumps(["resize", rows, columns]))
