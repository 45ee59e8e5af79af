"""``Server``: the one process that owns the hardware and hosts every session.

Wall #3 of the design: several views on one beamline at once (a console per person, a GUI,
background regulation) while most devices accept one connection
(docs/decisions/0007-one-process-many-sessions.md). The server owns, in one
root task group, in this start order:

1. the lock manager, on the settings Redis (leases shared with other processes), and the scan
   hooks: the server's own, given to each of its sessions (never process-wide: two servers
   in one process keep their locks and scans apart);
2. the supervised writer child (restarted when it dies) and the data memory guard;
3. the background tasks (configured in ``background:``, or started from a session);
4. the sessions of the configuration (``sessions:``; one default session without it), each
   holding a Redis lease on ``session:<name>`` so that no second server runs it;
5. the web app: the web shell's consoles and plots, with the API (:class:`blissng.web.Api`)
   mounted on the same Starlette app.

Leaving (cancellation, SIGTERM through the CLI) undoes this in reverse order: the web app
stops, the sessions' commands are cancelled (their scans abort and stop their devices), every
motor of the configuration is stopped, the background tasks end, the writer gets SIGTERM and
is waited for. Redis belongs to the caller (``blissng serve`` stops an embedded one last).

Typical use::

    async with Server(config, urls, state_dir=path, web=web_runner(WebOptions())) as server:
        print(server.url)
        await anyio.sleep_forever()
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.abc

from blissng.config import Config
from blissng.data import aborting_because, forget_redis, give_up_on_redis, unregister_fallback
from blissng.devices import Movable
from blissng.errors import BlissngError, sole_exception
from blissng.health import loop_monitor, loop_stats
from blissng.locks import DeviceLocked, Holder, LockManager, holding_as, waiting_for_locks
from blissng.redisdb import RedisUrls
from blissng.scans import ScanHooks
from blissng.writer import install as install_file_fallback

from ._background import BackgroundTask, BackgroundTasks
from ._background_config import start_configured_tasks
from ._events import ServerEvents
from ._keeper import keep_running
from ._process_hooks import process_hooks
from ._session import Session
from ._spec import sessions_from_config
from ._supervisor import Supervised, writer_command
from ._writer_events import report_writer_events

log = logging.getLogger("blissng.server")

STOP_DEADLINE = 10.0  # seconds for the motors to stop at shutdown
STOP_GRACE = 3.0  # seconds a stopping server's scans wait for a data Redis that does not answer
SESSION_LEASE = 10.0  # seconds: a killed server's sessions are free again after this


class ConsoleHost(Protocol):
    """What the server needs of the consoles of its sessions (the shell's ``ShellHub``): told
    of each session that starts or stops while it runs. A protocol of this layer, so that the
    session layer names nothing of the shell above it."""

    @property
    def running(self) -> bool: ...

    async def add_session(self, session: Session) -> object: ...

    def remove_session(self, name: str) -> None: ...


class ServerError(BlissngError, RuntimeError):
    """The server cannot start (a session already running elsewhere, ...)."""


# The web app is a higher layer: it gives the server a runner, ``await runner(server,
# task_status=...)`` that serves until cancelled and reports its URL
# (``blissng.web.web_runner(options)``).
WebRunner = Callable[..., Coroutine[Any, Any, Any]]


def session_lock_name(session: str) -> str:
    """The lock a running session holds: ``session:<name>``."""
    return f"session:{session}"


class Server:
    """Devices, sessions, background tasks, the writer and the web app of one beamline.

    ``config`` is a ``blissng.config.Config`` (its objects are built once and shared by the
    sessions); ``redis`` the two Redis URLs (``None``: everything in memory, no writer, locks
    in this process only); ``state_dir`` holds the session logs and the connection file
    ``web.json`` (URL + token) that :mod:`blissng.client` and ``blissng shell`` read.
    ``web=None`` runs no web app; ``writer=False`` no writer child. ``lock_manager``: the
    device locks of its sessions (default: a manager of its own on the settings Redis, with
    ``lease_time``); ``scan_hooks`` (:class:`~blissng.scans.ScanHooks`) sees every scan
    of its sessions.
    """

    def __init__(
        self,
        config: Config,
        redis: RedisUrls | None,
        *,
        state_dir: Path,
        web: WebRunner | None = None,
        writer: bool = True,
        memory_guard: bool = True,
        default_session: str = "main",
        lock_manager: LockManager | None = None,
        lease_time: float = 3.0,
        sessions: list[Session] | None = None,
    ) -> None:
        self.config = config
        self.redis = redis
        self.state_dir = Path(state_dir)
        self.web = web
        self.use_writer = writer and redis is not None
        self.use_memory_guard = memory_guard and redis is not None
        self.default_session = default_session
        self.lease_time = lease_time
        self.locks = (
            lock_manager
            if lock_manager is not None
            else LockManager(redis.settings if redis is not None else None, lease_time=lease_time)
        )
        self.scan_hooks = ScanHooks()
        self.id = secrets.token_hex(3)
        self.sessions: dict[str, Session] = {}
        self._planned = sessions
        self.background = BackgroundTasks()
        self.writer: Supervised | None = None
        self.memory_guard: Any = None
        self.url: str | None = None
        self.started = anyio.Event()
        self._stack: contextlib.AsyncExitStack | None = None
        self.events = ServerEvents()
        self.tasks: anyio.abc.TaskGroup
        self.background_objects: dict[str, Any] = {}
        self._session_scopes: dict[str, tuple[anyio.CancelScope, anyio.Event]] = {}
        self._sessions_tg: anyio.abc.TaskGroup
        self.hub: ConsoleHost | None = None
        """The consoles of the sessions: the web runner makes it, or the command line first
        (for this terminal's console too)."""
        self.stop_reason: str | None = None
        """Why the server stops (the command line sets it: ``SIGTERM``, a dead Redis); the
        scans it aborts record it."""

    def __repr__(self) -> str:
        return f"<Server {', '.join(self.sessions) or 'no sessions'}>"

    # ------------------------------------------------------------------ life cycle

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[Server] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled (``server = await tg.start(server.serve)``)."""
        async with self:
            task_status.started(self)
            await anyio.sleep_forever()

    async def __aenter__(self) -> Server:
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            await self._start(stack)
        except BaseException as exc:
            # Not in a shielded scope: the stack's task groups must be left innermost first.
            try:
                await stack.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseExceptionGroup as group:
                if sole_exception(group) is exc:  # our error, wrapped by the task groups
                    raise exc from None
                raise
            raise
        self._stack = stack
        self.started.set()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        stack, self._stack = self._stack, None
        assert stack is not None
        reason = self.stop_reason or "the server is stopping"
        log.info("server stopping%s", f" ({self.stop_reason})" if self.stop_reason else "")
        if self.redis is not None:  # a data Redis that does not answer is not waited for
            give_up_on_redis(
                self.redis.data,
                f"the server is stopping ({reason}) and its data Redis does not answer",
                after=STOP_GRACE,
            )
        try:
            # The scans cancelled now say why: not "by the user".
            with aborting_because(f"the server stopped ({reason})"):
                return await stack.__aexit__(*exc_info)
        finally:
            if self.redis is not None:
                forget_redis(self.redis.data)
            log.info("server stopped")

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        # The sessions to run, and what they import on their way up (the workflows: ewoks),
        # imported before the loop monitor starts: an import holds the loop (seconds on a
        # loaded machine), which the monitor would report at every start.
        planned = self._planned if self._planned is not None else self._configured_sessions()
        if any(session.workflows for session in planned):
            import blissng.workflows  # noqa: F401
        # 0. The process-wide hooks of commands (output routing, interruptible sleep, no
        # stdin nor getpass in commands), undone when the server stops; the event-loop
        # monitor: stalls and their culprits, `loop_stats()` in sessions.
        stack.enter_context(process_hooks())
        await stack.enter_async_context(loop_monitor())
        # 1. Locks shared with other processes through the settings Redis: self.locks.
        # 2. The writer and the data memory guard.
        if self.use_writer:
            assert self.redis is not None
            self.writer = Supervised("writer", writer_command(self.redis.data))
            await stack.enter_async_context(_running(self._run_writer))
            # Readers fall back on the files once data leaves Redis; writer errors are
            # printed in the session that ran the scan.
            fallback = install_file_fallback(self.redis.data)
            stack.callback(unregister_fallback, fallback)
            follow = functools.partial(report_writer_events, self.redis.data, self._session_output)
            await stack.enter_async_context(
                _running(functools.partial(keep_running, "writer events", follow))
            )
        if self.use_memory_guard:
            assert self.redis is not None
            from blissng.data import MemoryGuard

            self.memory_guard = MemoryGuard(self.redis.data)
            stack.push_async_callback(self.memory_guard.aclose)
            await stack.enter_async_context(_running(self._run_memory_guard))
        # 3. Background tasks; the motors are stopped after the sessions, before these end.
        await stack.enter_async_context(self.background)
        stack.push_async_callback(self._stop_motors)
        # Small server-owned tasks (the API's command watchers), cancelled at exit.
        self.tasks = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(self.tasks.cancel_scope.cancel)
        # 4. Sessions, each holding its lease.
        self._sessions_tg = await stack.enter_async_context(anyio.create_task_group())
        stack.push_async_callback(self._stop_sessions)
        for session in planned:
            await self.start_session(session)
        start_configured_tasks(self, self.config)
        # 5. The web app with the API.
        if self.web is not None:
            runner = functools.partial(self.web, self)
            self.url = await stack.enter_async_context(_running(runner))
        log.info("server ready: sessions %s", ", ".join(self.sessions) or "none")

    def _session_output(self, name: str) -> Any:
        session = self.sessions.get(name)
        return session.output if session is not None else None

    def _configured_sessions(self) -> list[Session]:
        sessions = sessions_from_config(self.config, self.redis)
        if not sessions:
            sessions = [Session(self.default_session, config=self.config, redis=self.redis)]
        return sessions

    def _expose(self, session: Session) -> None:
        """What a session's users get from the server in their namespace."""
        session.namespace.setdefault("SERVER", self)
        session.namespace.setdefault("config", self.config)  # config.info("m1"), names()
        session.namespace.setdefault(
            "start_background", functools.partial(self.start_background, owner=session.name)
        )
        session.namespace.setdefault("stop_background", self.stop_background)
        session.namespace.setdefault("background_tasks", self.background_tasks)
        session.namespace.setdefault("loop_stats", loop_stats)
        session.namespace.setdefault("lslock", self.locks.list_locks)
        session.namespace.setdefault("force_unlock", self.locks.force_unlock)
        session.namespace.setdefault("waiting_for_locks", waiting_for_locks)

    async def start_session(self, session: Session) -> Session:
        """Start ``session`` in the server (it takes its ``session:<name>`` lease first). The
        session's scans take the server's device locks and run the server's scan hooks."""
        if session.name in self.sessions:
            raise ServerError(f"session {session.name!r} already runs in this server")
        if session.started:
            raise ServerError(f"session {session.name!r} already runs (outside this server)")
        session.locks = self.locks
        session.scan_hooks = self.scan_hooks
        scope = anyio.CancelScope()
        done = anyio.Event()
        self._session_scopes[session.name] = (scope, done)
        try:
            await self._sessions_tg.start(self._run_session, session, scope, done)
        except BaseException:
            self._session_scopes.pop(session.name, None)
            raise
        self.sessions[session.name] = session
        self._expose(session)
        for name, obj in self.background_objects.items():
            session.namespace.setdefault(name, obj)
        if self.hub is not None and self.hub.running:
            await self.hub.add_session(session)
        return session

    async def stop_session(self, name: str) -> None:
        """Close one session: its commands are cancelled (scans abort), its lease released.
        Background tasks it started go on."""
        self.session(name)
        if self.hub is not None:
            self.hub.remove_session(name)
        scope, done = self._session_scopes[name]
        scope.cancel()
        await done.wait()

    async def _stop_sessions(self) -> None:
        running = list(self._session_scopes.values())
        for scope, _ in running:
            scope.cancel()
        for _, done in running:
            await done.wait()

    async def _run_session(
        self,
        session: Session,
        scope: anyio.CancelScope,
        done: anyio.Event,
        *,
        task_status: anyio.abc.TaskStatus[None],
    ) -> None:
        try:
            with scope:
                await self._hold_session(session, task_status)
        finally:
            self.sessions.pop(session.name, None)
            self._session_scopes.pop(session.name, None)
            done.set()

    async def _hold_session(
        self, session: Session, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        holder = Holder(session.name, f"server-{self.id}", "serve")
        acquired = False
        with holding_as(holder):
            try:
                lock = self.locks.lock(
                    session_lock_name(session.name), timeout=0, lease_time=SESSION_LEASE
                )
                async with lock:
                    acquired = True
                    async with session:
                        task_status.started()
                        await anyio.sleep_forever()
            except DeviceLocked as exc:
                if acquired:
                    raise
                who = exc.holder.describe() if exc.holder else "another server"
                raise ServerError(
                    f"session {session.name!r} is already running in {who}; stop that "
                    f"server first (or force_unlock({session_lock_name(session.name)!r}, "
                    "reason) if it is gone)"
                ) from None

    async def _run_writer(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        assert self.writer is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.writer.run)
            await self.writer.started.wait()
            task_status.started()

    async def _run_memory_guard(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        await keep_running("memory guard", lambda **_: self.memory_guard.run())

    async def _stop_motors(self) -> None:
        """Every motor the sessions expose, stopped (shielded, with a deadline)."""
        motors: dict[int, Any] = {}
        for session in self.sessions.values():
            for obj in session.objects.values():
                if isinstance(obj, Movable):
                    motors[id(obj)] = obj

        async def stop(motor: Any) -> None:
            try:
                await motor.stop()
            except Exception as exc:
                log.warning("could not stop %s at shutdown: %s", motor.name, exc)

        with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_DEADLINE):
            async with anyio.create_task_group() as tg:
                for motor in motors.values():
                    tg.start_soon(stop, motor)

    # ------------------------------------------------------------------ sessions

    def session(self, name: str) -> Session:
        try:
            return self.sessions[name]
        except KeyError:
            known = ", ".join(sorted(self.sessions)) or "none"
            raise KeyError(f"no session {name!r} in this server (sessions: {known})") from None

    # ------------------------------------------------------------------ background tasks

    def start_background(
        self,
        name: str,
        step: Callable[[], Awaitable[Any]],
        *,
        period: float,
        owner: str = "",
    ) -> BackgroundTask:
        """``start_background("watch", step, period=1.0)``: ``await step()`` every ``period``
        seconds in the server's task group (it outlives the session that started it).
        From a session's console (a worker thread), it is scheduled on the event loop."""
        from blissng.scans import on_event_loop_thread

        if on_event_loop_thread():
            return self.background.start(name, step, period=period, owner=owner)
        import anyio.from_thread

        return anyio.from_thread.run_sync(
            functools.partial(self.background.start, name, step, period=period, owner=owner)
        )

    def stop_background(self, name: str) -> Any:
        """Stop a background task (awaitable on the loop, blocking from a console thread)."""
        from blissng.scans import on_event_loop_thread, run_blocking

        if on_event_loop_thread():
            return self.background.stop(name)
        return run_blocking(self.background.stop, name)

    def background_tasks(self) -> Mapping[str, BackgroundTask]:
        return self.background.tasks

    # ------------------------------------------------------------------ description

    def summary(self) -> dict[str, Any]:
        """JSON-able: sessions, background tasks, writer, URLs (for the API)."""
        return {
            "sessions": [s.summary() for s in self.sessions.values()],
            "background": {
                name: {
                    "state": task.state.value,
                    "period": task.period,
                    "owner": task.owner,
                    "error": repr(task.error) if task.error else None,
                    "jitter": task.jitter.summary(),
                }
                for name, task in self.background.tasks.items()
            },
            "writer": None
            if self.writer is None
            else {"pid": self.writer.pid, "starts": self.writer.starts},
            "redis": None
            if self.redis is None
            else {"settings": self.redis.settings, "data": self.redis.data},
        }


@contextlib.asynccontextmanager
async def _running(func: Callable[..., Coroutine[Any, Any, Any]]) -> AsyncIterator[Any]:
    """Run ``func`` (which reports its start with ``task_status``) as a task for the block;
    cancel it when the block ends."""
    async with anyio.create_task_group() as tg:
        value = await tg.start(func)
        try:
            yield value
        finally:
            tg.cancel_scope.cancel()
