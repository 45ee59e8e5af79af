"""``blissng shell SESSION``: this terminal attached to a console of a running server.

The same console as a browser tab (docs/webshell.md protocol), in a plain terminal: the local
terminal goes to raw mode, keystrokes are sent as ``stdin`` messages, the console's output is
written back, window size changes are sent as ``resize``. The client never opens the
hardware: everything runs in the server. The console survives the client (detach with the
connection, reattach with ``--console ID``); Ctrl-D at an empty prompt closes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import termios
import tty
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import anyio
import anyio.to_thread
from websockets.asyncio.client import ClientConnection, connect, unix_connect
from websockets.exceptions import ConnectionClosed


class RemoteShellError(RuntimeError):
    """The console could not be reached or was refused (the message says why)."""


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode on a terminal (restored on exit); nothing when ``fd`` is not a terminal."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_size(fd: int) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 24, 80
    return (size.lines or 24), (size.columns or 80)  # a fresh pty reports 0x0


def console_url(
    base: str,
    session: str,
    *,
    token: str | None,
    console: str | None,
    mode: str,
    size: tuple[int, int],
) -> tuple[str, str | None]:
    """The websocket URL (and unix socket path, for ``unix:/path`` bases)."""
    params = {"mode": mode, "rows": size[0], "cols": size[1]}
    if token:
        params["token"] = token
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
        base_url, session, token=token, console=console, mode=mode, size=terminal_size(stdout_fd)
    )
    ws = await _open(url, uds)
    closed: tuple[int, str] = (1000, "")
    try:
        with raw_terminal(stdin_fd):
            async with anyio.create_task_group() as tg:
                if mode == "control":
                    tg.start_soon(_pump_keys, ws, stdin_fd)
                    if hasattr(signal, "SIGWINCH") and _main_thread():
                        tg.start_soon(_follow_size, ws, stdout_fd)
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


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _handle(message: list[Any], stdout_fd: int) -> None:
    if message and message[0] == "stdout":
        data = str(message[1]).encode("utf-8", errors="replace")
        while data:
            written = os.write(stdout_fd, data)
            data = data[written:]


async def _pump_keys(ws: ClientConnection, fd: int) -> None:
    pollable = True
    while True:
        if pollable:
            try:
                await anyio.wait_readable(fd)
            except PermissionError:  # a regular file or /dev/null: read it in a thread
                pollable = False
        if pollable:
            data = os.read(fd, 4096)
        else:
            data = await anyio.to_thread.run_sync(os.read, fd, 4096, abandon_on_cancel=True)
        if not data:  # stdin closed: leave the console running
            await ws.close()
            return
        await ws.send(json.dumps(["stdin", data.decode("utf-8", errors="replace")]))


async def _follow_size(ws: ClientConnection, fd: int) -> None:
    with anyio.open_signal_receiver(signal.SIGWINCH) as signals:
        async for _ in signals:
            rows, columns = terminal_size(fd)
            await ws.send(json.dumps(["resize", rows, columns]))
