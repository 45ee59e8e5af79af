"""The consoles of each session, and the hub that holds every session's consoles.

A console belongs to its session (architecture: "a session's task group holds the commands its
consoles run"), not to the websocket that typed into it. :class:`SessionConsoles` owns a task
group in which its consoles run; websockets come and go (:mod:`blissng.web._console_socket`). A
console nobody is attached to is closed after ``idle_timeout`` unless a command still runs.

:class:`ShellHub` is what the web app and the server use: ``async with ShellHub(...) as hub``,
then ``await hub.add_session(session)`` for each session (the server does this as sessions
start), ``hub.get(name)`` to find one.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
from prompt_toolkit.history import InMemoryHistory

from blissng.errors import BlissngError

from ._builtins import console_builtins
from ._console import Console
from ._log import SessionLog
from ._shell_session import ShellSession


def default_log_dir() -> Path:
    """Where session logs go when the server does not say: $BLISSNG_LOG_DIR or
    ~/.local/state/blissng/logs."""
    configured = os.environ.get("BLISSNG_LOG_DIR")
    if configured:
        return Path(configured)
    return Path.home() / ".local" / "state" / "blissng" / "logs"


class UnknownConsole(BlissngError, KeyError):
    """A console id that this session does not have (closed, or never existed)."""


class TooManyConsoles(BlissngError, RuntimeError):
    """The session already has its maximum number of consoles."""


class SessionConsoles:
    """The consoles of one session, their shared history and the session's log file."""

    def __init__(
        self,
        session: ShellSession,
        task_group: anyio.abc.TaskGroup,
        *,
        log_dir: Path | None = None,
        max_consoles: int = 32,
        idle_timeout: float = 600.0,
    ) -> None:
        self.session = session
        self.name = session.name
        self.history = InMemoryHistory()
        log_path = (log_dir or default_log_dir()) / f"{session.name}.log"
        self.log = SessionLog(log_path)
        self.max_consoles = max_consoles
        self.idle_timeout = idle_timeout
        self._consoles: dict[str, Console] = {}
        self._outer = task_group
        self._scope = anyio.CancelScope()
        for name, value in console_builtins().items():
            session.namespace.setdefault(name, value)

    def __repr__(self) -> str:
        return f"<SessionConsoles {self.name!r}: {len(self._consoles)} consoles>"

    @property
    def consoles(self) -> dict[str, Console]:
        return dict(self._consoles)

    def get(self, console_id: str) -> Console:
        try:
            return self._consoles[console_id]
        except KeyError:
            raise UnknownConsole(
                f"session {self.name!r} has no console {console_id!r} (it was closed); "
                "open a new one"
            ) from None

    async def open(
        self, console_id: str | None = None, *, rows: int = 24, columns: int = 80
    ) -> Console:
        """A new console (``console_id`` chosen by the client so it can reattach later)."""
        if console_id is not None and console_id in self._consoles:
            return self._consoles[console_id]
        if len(self._consoles) >= self.max_consoles:
            raise TooManyConsoles(
                f"session {self.name!r} already has {len(self._consoles)} consoles (limit "
                f"{self.max_consoles}); close a tab or attach to an existing console"
            )
        console = Console(self, console_id, rows=rows, columns=columns)
        self._consoles[console.id] = console
        await self._outer.start(self._run_console, console)
        return console

    async def _run_console(
        self, console: Console, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        try:
            await console.run(task_status=task_status)
        finally:
            self._consoles.pop(console.id, None)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The session's housekeeping: its log writer and the idle-console reaper."""
        # What the session prints outside our consoles' commands (its setup, commands run
        # through the server's API, warnings) is shown in every console of the session.
        output: Any = getattr(self.session, "output", None)
        detach = output.attach(self._broadcast) if hasattr(output, "attach") else None
        try:
            await self._housekeeping(task_status)
        finally:
            if detach is not None:
                detach()

    def _broadcast(self, text: str) -> None:
        self.log.output(text)
        for console in list(self._consoles.values()):
            console.write_output(text, stream="session")

    async def _housekeeping(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        with self._scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.log.run)
                task_status.started()
                while True:
                    await anyio.sleep(min(5.0, self.idle_timeout / 2))
                    now = anyio.current_time()
                    for console in list(self._consoles.values()):
                        if (
                            console.attached == 0
                            and not console.busy
                            and now - console.last_detach > self.idle_timeout
                        ):
                            console.close()

    def close(self) -> None:
        """Close every console of the session (running commands are cancelled)."""
        for console in list(self._consoles.values()):
            console.close()
        self._scope.cancel()


class ShellHub:
    """Every session's consoles, in one task group (the web app's or the server's)."""

    def __init__(
        self,
        *,
        log_dir: Path | None = None,
        max_consoles: int = 32,
        idle_timeout: float = 600.0,
    ) -> None:
        self.log_dir = log_dir
        self.max_consoles = max_consoles
        self.idle_timeout = idle_timeout
        self._sessions: dict[str, SessionConsoles] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    @property
    def running(self) -> bool:
        return self._tg is not None

    @property
    def sessions(self) -> dict[str, SessionConsoles]:
        return dict(self._sessions)

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        for consoles in self._sessions.values():
            consoles.close()
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._tg = None
            self._sessions.clear()

    async def add_session(
        self, session: ShellSession, *, max_consoles: int | None = None
    ) -> SessionConsoles:
        """Make ``session`` reachable from consoles (idempotent for the same object). The
        session runs already (its command runner runs the consoles' commands)."""
        if self._tg is None:
            raise RuntimeError("ShellHub is not running: use `async with ShellHub() as hub`")
        if not session.runner.running:
            raise RuntimeError(
                f"session {session.name!r} is not started: enter it (`async with session`) "
                "before giving it consoles"
            )
        existing = self._sessions.get(session.name)
        if existing is not None:
            if existing.session is not session:
                raise ValueError(f"another session named {session.name!r} is already served")
            return existing
        consoles = SessionConsoles(
            session,
            self._tg,
            log_dir=self.log_dir,
            max_consoles=max_consoles or self.max_consoles,
            idle_timeout=self.idle_timeout,
        )
        self._sessions[session.name] = consoles
        await self._tg.start(consoles.run)
        return consoles

    def remove_session(self, name: str) -> None:
        consoles = self._sessions.pop(name, None)
        if consoles is not None:
            consoles.close()

    def get(self, name: str) -> SessionConsoles:
        try:
            return self._sessions[name]
        except KeyError:
            known = ", ".join(sorted(self._sessions)) or "none"
            raise KeyError(f"unknown session {name!r} (served sessions: {known})") from None
