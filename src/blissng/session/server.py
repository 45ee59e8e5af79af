"""``Server``: the one process that owns the hardware and hosts every session.

Wall #3 of the design: several views on one beamline at once (a console per person, a GUI,
background regulation) while most devices accept one connection. The server owns, in one
root task group, in this start order:

1. the lock manager, configured with the settings Redis (leases shared with other processes);
2. the supervised writer child (restarted when it dies) and the data memory guard;
3. the background tasks (configured in ``background:``, or started from a session);
4. the sessions of the configuration (``sessions:``; one default session without it), each
   holding a Redis lease on ``session:<name>`` so that no second server runs it;
5. the web app: the web shell's consoles and plots, with the API (:mod:`blissng.web.api`)
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
from typing import Any

import anyio
import anyio.abc

from blissng.config import Config
from blissng.data import unregister_fallback
from blissng.devices.protocols import Movable
from blissng.health import loop_monitor, loop_stats
from blissng.locks import DeviceLocked, Holder, LockManager, holding_as, locks
from blissng.redisdb import RedisUrls
from blissng.writer import install as install_file_fallback

from .background import BackgroundTask, BackgroundTasks
from .background_config import start_configured_tasks
from .session import Session
from .spec import sessions_from_config
from .supervisor import Supervised, writer_command
from .writer_events import report_writer_events

log = logging.getLogger("blissng.server")

STOP_DEADLINE = 10.0  # seconds for the motors to stop at shutdown
SESSION_LEASE = 10.0  # seconds: a killed server's sessions are free again after this


class ServerError(RuntimeError):
    """The server cannot start (a session already running elsewhere, ...)."""


# The web app is a higher layer: it gives the server a runner, ``await runner(server,
# task_status=...)`` that serves until cancelled and reports its URL
# (``blissng.web.api.web_runner(options)``).
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
    ``web=None`` runs no web app; ``writer=False`` no writer child. ``lock_manager`` defaults
    to the process-wide :data:`blissng.locks.locks` that the devices use.
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
        self.locks = lock_manager if lock_manager is not None else locks
        self.lease_time = lease_time
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
        self.hub: Any = None

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
                if _only_leaf(group) is exc:  # our error, wrapped by the task groups
                    raise exc from None
                raise
            raise
        self._stack = stack
        self.started.set()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        stack, self._stack = self._stack, None
        assert stack is not None
        log.info("server stopping")
        try:
            return await stack.__aexit__(*exc_info)
        finally:
            log.info("server stopped")

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        # 0. The event-loop monitor: stalls and their culprits, `loop_stats()` in sessions.
        await stack.enter_async_context(loop_monitor())
        # 1. Locks shared with other processes through the settings Redis.
        if self.redis is not None and self.locks.redis_url != self.redis.settings:
            previous = (self.locks.redis_url, self.locks.lease_time)
            self.locks.configure(self.redis.settings, lease_time=self.lease_time)
            stack.callback(self._restore_locks, *previous)
        # 2. The writer and the data memory guard.
        if self.use_writer:
            assert self.redis is not None
            self.writer = Supervised("writer", writer_command(self.redis.data))
            await stack.enter_async_context(_running(self._run_writer))
            # Readers fall back on the files once data leaves Redis; writer errors are
            # printed in the session that ran the scan.
            fallback = install_file_fallback(self.redis.data)
            stack.callback(unregister_fallback, fallback)
            await stack.enter_async_context(
                _running(
                    functools.partial(report_writer_events, self.redis.data, self._session_output)
                )
            )
        if self.use_memory_guard:
            assert self.redis is not None
            from blissng.data.memory import MemoryGuard

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
        planned = self._planned if self._planned is not None else self._configured_sessions()
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
        session.namespace.setdefault(
            "start_background", functools.partial(self.start_background, owner=session.name)
        )
        session.namespace.setdefault("stop_background", self.stop_background)
        session.namespace.setdefault("background_tasks", self.background_tasks)
        from blissng.locks import force_unlock, lslock, waiting_for_locks

        session.namespace.setdefault("loop_stats", loop_stats)
        session.namespace.setdefault("lslock", lslock)
        session.namespace.setdefault("force_unlock", force_unlock)
        session.namespace.setdefault("waiting_for_locks", waiting_for_locks)

    async def start_session(self, session: Session) -> Session:
        """Start ``session`` in the server (it takes its ``session:<name>`` lease first)."""
        if session.name in self.sessions:
            raise ServerError(f"session {session.name!r} already runs in this server")
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
        hub = getattr(self, "hub", None)
        if hub is not None and hub.running:
            await hub.add_session(session)
        return session

    async def stop_session(self, name: str) -> None:
        """Close one session: its commands are cancelled (scans abort), its lease released.
        Background tasks it started go on."""
        self.session(name)
        hub = getattr(self, "hub", None)
        if hub is not None:
            hub.remove_session(name)
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

    def _restore_locks(self, redis_url: str | None, lease_time: float) -> None:
        """Give the lock manager back as it was (several servers in turn, in tests)."""
        try:
            self.locks.configure(redis_url, lease_time=lease_time)
        except RuntimeError as exc:  # a lock still held elsewhere in the process
            log.warning("lock manager left on this server's Redis: %s", exc)

    async def _run_writer(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        assert self.writer is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.writer.run)
            await self.writer.started.wait()
            task_status.started()

    async def _run_memory_guard(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        await self.memory_guard.run()

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
        from blissng.scans.bridge import on_event_loop_thread

        if on_event_loop_thread():
            return self.background.start(name, step, period=period, owner=owner)
        import anyio.from_thread

        return anyio.from_thread.run_sync(
            functools.partial(self.background.start, name, step, period=period, owner=owner)
        )

    def stop_background(self, name: str) -> Any:
        """Stop a background task (awaitable on the loop, blocking from a console thread)."""
        from blissng.scans.bridge import on_event_loop_thread, run_blocking

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


class ServerEvents:
    """Fan-out of server events (object state changes, commands) to API subscribers.

    Each subscriber gets a bounded memory stream; a subscriber too slow to keep up loses the
    oldest events rather than slowing the server (its ``dropped`` count says so).
    """

    def __init__(self, buffer: int = 1000) -> None:
        self.buffer = buffer
        self._subscribers: list[_Subscriber] = []

    def publish(self, event: dict[str, Any]) -> None:
        for subscriber in list(self._subscribers):
            subscriber.put(event)

    @contextlib.contextmanager
    def subscribe(self) -> Any:
        subscriber = _Subscriber(self.buffer)
        self._subscribers.append(subscriber)
        try:
            yield subscriber
        finally:
            self._subscribers.remove(subscriber)


class _Subscriber:
    def __init__(self, buffer: int) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[dict[str, Any]](buffer)
        self.dropped = 0

    def put(self, event: dict[str, Any]) -> None:
        try:
            self.send.send_nowait(event)
        except anyio.WouldBlock:
            self.dropped += 1


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


def _only_leaf(error: BaseException) -> BaseException:
    """The one exception inside nested single-exception groups (else the group itself)."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
