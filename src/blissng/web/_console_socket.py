"""The console websocket: a browser tab (or ``blissng shell``) attached to a session's console.

``/ws/console/{session}?console=ID&mode=control|view`` — the protocol is documented in
docs/webshell.md. The websocket only *attaches* to a :class:`~blissng.shell.Console`
that lives in the session's task group: closing the socket (page reload, network blip) never
stops the console or its running command; a tab reconnecting with the same ``console`` id gets
the scrollback replayed and goes on. Viewers (``mode=view``) receive everything and cannot type;
a connection admitted with a view key (a watch link) is a viewer whatever it asks.

Every failure closes only this websocket, with a code and a reason saying what to do: the
server and the other tabs go on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect

from blissng.errors import BlissngError
from blissng.shell import Console, ShellHub, TooManyConsoles, UnknownConsole

# Close codes (4000-4999 are the application's; see docs/webshell.md).
CLOSE_NORMAL = 1000
CLOSE_TOO_BIG = 1009
CLOSE_MALFORMED = 4400
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_READ_ONLY = 4405
CLOSE_TOO_MANY = 4429
CLOSE_CONSOLE_CLOSED = 4410

MAX_FRAME = 1024 * 1024  # characters in one client message
MAX_PASTE = 256 * 1024  # characters of one stdin message
MAX_CHUNK = 64 * 1024  # characters of terminal output per server message
_CONSOLE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class BadConsoleMessage(BlissngError):
    """A client message that breaks the protocol: the websocket closes with this reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class ConnectionLimit:
    """How many console websockets the whole app accepts at once."""

    limit: int = 64
    count: int = 0


def parse_message(text: str) -> tuple[str, list[Any]]:
    """``["stdin", "ls"]`` -> ("stdin", ["ls"]); BadConsoleMessage for anything else."""
    if len(text) > MAX_FRAME:
        raise BadConsoleMessage(
            CLOSE_TOO_BIG, f"message too large ({len(text)} characters > {MAX_FRAME})"
        )
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise BadConsoleMessage(CLOSE_MALFORMED, f"malformed message (not JSON: {exc})") from None
    except RecursionError:
        raise BadConsoleMessage(
            CLOSE_MALFORMED, "malformed message (JSON nested too deep)"
        ) from None
    if not isinstance(message, list) or not message or not isinstance(message[0], str):
        raise BadConsoleMessage(
            CLOSE_MALFORMED, 'malformed message: expected a JSON array ["type", ...]'
        )
    kind, args = message[0], message[1:]
    if kind == "stdin":
        if len(args) != 1 or not isinstance(args[0], str):
            raise BadConsoleMessage(CLOSE_MALFORMED, 'malformed stdin: expected ["stdin", "text"]')
        if len(args[0]) > MAX_PASTE:
            raise BadConsoleMessage(
                CLOSE_TOO_BIG,
                f"paste too large ({len(args[0])} characters > {MAX_PASTE}): "
                "run a script file instead",
            )
    elif kind == "resize":
        if (
            len(args) != 2
            or not all(isinstance(a, int) and not isinstance(a, bool) for a in args)
            or not (1 <= args[0] <= 1000 and 1 <= args[1] <= 2000)
        ):
            raise BadConsoleMessage(
                CLOSE_MALFORMED,
                'malformed resize: expected ["resize", rows, columns] (1-1000, 1-2000)',
            )
    elif kind in ("ping", "close"):
        pass
    else:
        raise BadConsoleMessage(CLOSE_MALFORMED, f"unknown message type {kind!r}")
    return kind, args


class Sender:
    """Serialises sends: the output, status and pong tasks share one websocket."""

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self._lock = anyio.Lock()

    async def send(self, *message: Any) -> None:
        async with self._lock:
            await self._websocket.send_text(json.dumps(message))


async def close_websocket(websocket: WebSocket, code: int, reason: str) -> None:
    """Close with a code and a reason (cut to what a close frame holds), once."""
    try:
        await websocket.close(code=code, reason=reason[:120])
    except (RuntimeError, OSError):  # already closed by the client
        pass


async def serve_console(
    websocket: WebSocket,
    hub: ShellHub,
    limit: ConnectionLimit,
    session_name: str,
    *,
    view_only: bool = False,
) -> None:
    """Run one console websocket (security was checked before the handshake was accepted;
    ``view_only``: it came with a view key, not the token)."""
    await websocket.accept()
    if limit.count >= limit.limit:
        await close_websocket(
            websocket,
            CLOSE_TOO_MANY,
            f"too many connections (limit {limit.limit}); close other tabs and retry",
        )
        return
    limit.count += 1
    try:
        await _serve(websocket, hub, session_name, view_only)
    finally:
        limit.count -= 1


async def _serve(websocket: WebSocket, hub: ShellHub, session_name: str, view_only: bool) -> None:
    params = websocket.query_params
    mode = params.get("mode", "view" if view_only else "control")
    if view_only and mode != "view":
        await close_websocket(
            websocket,
            CLOSE_FORBIDDEN,
            "a watch link only shows the console (mode=view); control needs the token",
        )
        return
    console_id = params.get("console") or None
    try:
        rows = int(params.get("rows", "24"))
        columns = int(params.get("cols", "80"))
        if mode not in ("control", "view"):
            raise ValueError(f"mode must be 'control' or 'view', not {mode!r}")
        if console_id is not None and not _CONSOLE_ID.match(console_id):
            raise ValueError("console id must be 1-64 letters, digits, '_' or '-'")
        if not (1 <= rows <= 1000 and 1 <= columns <= 2000):
            raise ValueError(f"terminal size {rows}x{columns} out of range")
    except ValueError as exc:
        await close_websocket(websocket, CLOSE_MALFORMED, f"bad parameters: {exc}")
        return
    try:
        consoles = hub.get(session_name)
    except KeyError as exc:
        await close_websocket(websocket, CLOSE_NOT_FOUND, str(exc.args[0]))
        return
    try:
        if mode == "view":
            if console_id is None:
                raise UnknownConsole("a viewer needs ?console=ID of the console to watch")
            console = consoles.get(console_id)
        else:
            console = await consoles.open(console_id, rows=rows, columns=columns)
    except UnknownConsole as exc:
        await close_websocket(websocket, CLOSE_NOT_FOUND, str(exc.args[0]))
        return
    except TooManyConsoles as exc:
        await close_websocket(websocket, CLOSE_TOO_MANY, str(exc))
        return
    await _attach(websocket, console, readonly=mode == "view", rows=rows, columns=columns)


async def _attach(
    websocket: WebSocket, console: Console, *, readonly: bool, rows: int, columns: int
) -> None:
    console.attached += 1
    close: tuple[int, str] | None = None
    sender = Sender(websocket)
    try:
        await sender.send("hello", {**console.status(), "mode": "view" if readonly else "control"})
        if not readonly:
            console.resize(rows, columns)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_send_updates, websocket, sender, console, readonly)
            close = await _receive(websocket, sender, console, readonly)
            tg.cancel_scope.cancel()
    except* (WebSocketDisconnect, OSError, RuntimeError):
        pass  # the client went away (or the socket broke while sending): the console goes on
    finally:
        console.attached -= 1
        console.last_detach = anyio.current_time()
    if close is not None:
        await close_websocket(websocket, *close)


async def _receive(
    websocket: WebSocket, sender: Sender, console: Console, readonly: bool
) -> tuple[int, str] | None:
    """Read client messages until the client leaves (None) or breaks the protocol."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is None:
            return CLOSE_MALFORMED, "binary frames are not part of the protocol: send JSON text"
        try:
            kind, args = parse_message(text)
        except BadConsoleMessage as exc:
            return exc.code, exc.reason
        if kind == "ping":
            await sender.send("pong", *args)
        elif readonly:
            continue  # a viewer's keystrokes and size do not reach the console
        elif kind == "close":  # the tab is closed for good: so is its console
            console.close()
            await console.closed.wait()
            return CLOSE_NORMAL, "console closed"
        elif readonly:
            continue  # a viewer's keystrokes and size do not reach the console
        elif kind == "stdin":
            try:
                console.send_input(args[0])
            except ValueError as exc:
                return CLOSE_TOO_BIG, str(exc)
        elif kind == "resize":
            console.resize(args[0], args[1])
        if console.closed.is_set():
            return CLOSE_CONSOLE_CLOSED, "the console was closed"


async def _send_updates(
    websocket: WebSocket, sender: Sender, console: Console, readonly: bool
) -> None:
    """Terminal output (the scrollback first), then status changes, in the order they
    happened: one task, so a status never overtakes the output written before it."""
    feed = console.feed
    position = feed.replay_start()
    status_version = console.status_version
    first = True
    while True:
        activity = feed.activity()
        text, position = feed.read(position)
        while text:
            chunk, text = text[:MAX_CHUNK], text[MAX_CHUNK:]
            await sender.send("stdout", chunk)
        if console.status_version != status_version:
            status_version = console.status_version
            await sender.send("status", console.status())
        if first:
            first = False
            if not readonly:
                console.redraw()  # the replay ended: draw the live prompt below it
        if feed.closed and position >= feed.end:
            await close_websocket(websocket, CLOSE_CONSOLE_CLOSED, "the console was closed")
            return
        if position >= feed.end:
            await activity.wait()
