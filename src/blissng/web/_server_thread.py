"""Running the web app in a thread, and a small synchronous console client.

For tests, benchmarks and ``blissng shell --standalone``: uvicorn serves the app on its own
event loop in a worker thread (on a unix socket or a TCP port chosen by the system), and
:class:`ConsoleClient` speaks the console protocol (docs/webshell.md) with timeouts, so a test
waits for what it expects instead of sleeping.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import uvicorn
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect, unix_connect

from blissng.shell import strip_ansi

_ANSI_FULL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]|\x1b[=>]")


# Carriage return + erase the whole line: what was on the line is gone from the screen (the
# scan display's progress line is written, then erased this way before the next rows).
_ERASED_LINE = re.compile(r"[^\n]*\r\x1b\[2K")


def terminal_text(raw: str) -> str:
    """Terminal output without escape sequences and carriage returns (for assertions); text
    erased from its line (``\\r`` then erase-line) is dropped, as a terminal shows it."""
    return _ANSI_FULL.sub("", strip_ansi(_ERASED_LINE.sub("", raw))).replace("\r", "")


class ServerThread:
    """uvicorn serving ``app`` in a thread; ``with ServerThread(app, uds=path) as server``."""

    def __init__(
        self,
        app: Any,
        *,
        uds: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ws_max_size: int = 4 * 1024 * 1024,
    ) -> None:
        self.uds = uds
        self.host = host
        self._sock: socket.socket | None = None
        if uds is None:
            # proto=IPPROTO_TCP, as loop.create_server makes it: asyncio sets TCP_NODELAY only
            # on connections accepted from such a socket. With proto 0, a message sent right
            # after another waited for the client's delayed ACK (Nagle): 40 ms, the echo of
            # every Backspace that followed a redraw (benchmarks/echo_latency.py).
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host, port))
            self.port = self._sock.getsockname()[1]
        else:
            self.port = 0
        config = uvicorn.Config(
            app,
            uds=str(uds) if uds is not None else None,
            log_level="warning",
            lifespan="on",
            ws_max_size=ws_max_size,
            ws_ping_interval=None,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="blissng-web", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            sockets = [self._sock] if self._sock is not None else None
            self.server.run(sockets=sockets)
        except BaseException as exc:  # reported by start()/stop()
            self.error = exc

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if self.error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the web server did not start: {self.error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the web server did not start within {timeout} s")
            time.sleep(0.01)

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def connect(
        self,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        host_header: str | None = None,
        **params: Any,
    ) -> ClientConnection:
        """A websocket to ``path`` (query ``params``); ``host_header`` pretends the server was
        reached by another name (the TCP connection still goes to this server)."""
        query = urlencode({k: v for k, v in params.items() if v is not None})
        uri_host = "localhost" if self.uds is not None else f"{self.host}:{self.port}"
        uri = f"ws://{host_header or uri_host}{path}" + (f"?{query}" if query else "")
        if host_header is not None and self.uds is None:
            sock = socket.create_connection((self.host, self.port), timeout=10)
            connection = connect(
                uri, sock=sock, additional_headers=headers, max_size=None, open_timeout=10
            )
        elif self.uds is not None:
            connection = unix_connect(
                str(self.uds), uri, additional_headers=headers, max_size=None, open_timeout=10
            )
        else:
            connection = connect(uri, additional_headers=headers, max_size=None, open_timeout=10)
        return _owned(connection)  # closed by ConsoleClient.close()


def _owned(connection: ClientConnection) -> ClientConnection:
    """``connection`` entered as its context manager, for whoever takes it to close it:
    websockets (17.1) deprecates using one from ``connect()`` that was never entered."""
    return connection.__enter__()


class ConsoleClient:
    """One tab: the console protocol over a websocket, with deadlines on every wait."""

    def __init__(self, connection: ClientConnection) -> None:
        self.ws = _owned(connection)  # close() closes it
        self.raw = ""  # everything received on stdout
        self.hello: dict[str, Any] = {}
        self.status: dict[str, Any] = {}
        self.statuses: list[dict[str, Any]] = []
        self.pongs: list[Any] = []
        self.closed: tuple[int, str] | None = None
        self._mark = 0
        self._started = ""
        message = self.receive(10.0)
        if message is None or message[0] != "hello":
            raise RuntimeError(f"expected a hello message, got {message!r} ({self.closed})")

    @classmethod
    def open(
        cls, server: ServerThread, session: str, *, token: str | None = None, **params: Any
    ) -> ConsoleClient:
        return cls(server.connect(f"/ws/console/{session}", token=token, **params))

    @property
    def console_id(self) -> str:
        return str(self.hello["console"])

    @property
    def text(self) -> str:
        return terminal_text(self.raw)

    def receive(self, timeout: float) -> list[Any] | None:
        """One message (None after ``timeout``); records stdout, status, close."""
        try:
            data = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            self.closed = (rcvd.code, rcvd.reason) if rcvd is not None else (1006, "")
            raise
        message = json.loads(data)
        kind = message[0]
        if kind == "stdout":
            self.raw += message[1]
        elif kind == "hello":
            self.hello = message[1]
            self.status = message[1]
        elif kind == "status":
            self.status = message[1]
            self.statuses.append(message[1])
        elif kind == "pong":
            self.pongs.append(message[1] if len(message) > 1 else None)
        return list(message)

    def send(self, *message: Any) -> None:
        self.ws.send(json.dumps(list(message)))

    def type(self, text: str) -> None:
        self.send("stdin", text)

    def mark(self) -> None:
        """Later ``expect`` calls only look at text received after this point."""
        self._mark = len(self.raw)

    def expect(self, pattern: str, timeout: float = 10.0) -> str:
        """Wait until ``pattern`` (a regex) appears in the text received since the mark."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = terminal_text(self.raw[self._mark :])
            if regex.search(text):
                return text
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} not seen within {timeout} s; got:\n{text}")
            self.receive(left)

    def wait_status(self, busy: bool, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while self.status.get("busy") != busy:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"console never became busy={busy}: {self.status}")
            self.receive(left)
        return self.status

    def run(self, command: str, timeout: float = 10.0) -> str:
        """Type ``command`` + Enter and wait until it ran (busy, then idle); its output."""
        return self.finish(self.start(command), timeout)

    def start(self, command: str) -> int:
        """Type ``command`` + Enter and return at once; ``finish(start(...))`` waits for it
        (meanwhile a test may watch something else, e.g. the plot of the scan it started)."""
        self.mark()
        seen = len(self.statuses)
        self._started = command
        self.type(command + "\r")
        return seen

    def finish(self, seen: int, timeout: float = 10.0) -> str:
        """Wait until the command typed by ``start`` (which returned ``seen``) ran; its output."""
        command = self._started
        deadline = time.monotonic() + timeout
        while True:
            later = self.statuses[seen:]
            if any(s["busy"] for s in later) and not later[-1]["busy"]:
                return terminal_text(self.raw[self._mark :])
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{command!r} did not finish within {timeout} s; got:\n{self.text[-2000:]}"
                )
            self.receive(left)

    def wait_closed(self, timeout: float = 10.0) -> tuple[int, str]:
        deadline = time.monotonic() + timeout
        with contextlib.suppress(ConnectionClosed):
            while self.closed is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("the websocket was not closed")
                self.receive(left)
        assert self.closed is not None
        return self.closed

    def close(self) -> None:
        """Leave (the console goes on, as after a page reload)."""
        self.ws.close()

    def close_console(self) -> tuple[int, str]:
        """Close the console itself (a tab closed for good)."""
        self.send("close")
        return self.wait_closed()

    def __enter__(self) -> ConsoleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def close_reason(connection: ClientConnection, timeout: float = 10.0) -> tuple[int, str]:
    """Read until the server closes ``connection``; its close code and reason."""
    connection = _owned(connection)  # closed below
    deadline = time.monotonic() + timeout
    try:
        while True:
            connection.recv(timeout=max(0.0, deadline - time.monotonic()))
    except ConnectionClosed as exc:
        rcvd = exc.rcvd
        return (rcvd.code, rcvd.reason) if rcvd is not None else (1006, "")
    finally:
        connection.close()


@contextlib.contextmanager
def serve_sessions(
    *sessions: Any,
    token: str,
    directory: Path,
    data_url: str | None = None,
    tcp: bool = False,
) -> Iterator[ServerThread]:
    """The web app serving ``sessions`` (entered by the app) in a thread: a unix socket in
    ``directory`` (or a TCP port with ``tcp``, for a browser), session logs there too."""
    from blissng.shell import ShellHub

    from ._app import create_app
    from ._security import WebSecurity

    app = create_app(
        ShellHub(log_dir=directory / "logs"),
        security=WebSecurity(token=token),
        sessions=list(sessions),
        data_url=data_url,
    )
    with ServerThread(app, uds=None if tcp else directory / "web.sock") as server:
        yield server


@contextlib.contextmanager
def console(server: ServerThread, session: str, **params: Any) -> Iterator[ConsoleClient]:
    client = ConsoleClient.open(server, session, **params)
    try:
        yield client
    finally:
        client.close()
