"""``Session``: one user-facing view of the beamline (BLISS's session), many per server.

A session has a name, the configuration objects it exposes, a setup script, a namespace (what
users type at its consoles: the scan and motor commands, its objects, ``SCAN_SAVING``,
``ACTIVE_MG``, the last scans), persistent scan numbering, its measurement groups and the
active one, an output stream that its consoles attach to, and a task group that owns the
commands it runs. The devices are shared objects (a ``Config`` owned by the server); a session
only exposes them.

Typical use (the server does this for each session)::

    async with Session("demo", config=config, redis=urls, setup_file=path) as session:
        detach = session.output.attach(console.write)
        cmd = session.submit_source("ascan(m1, 0, 1, 10, 0.1)")   # from a console
        await cmd.wait()

or ``await task_group.start(session.serve)`` to run it in the server's task group until
cancelled.

The scans layer below never imports this one: the session passes its context down as a
``blissng.scans.context.ScanContext`` made current for each command.
"""

from __future__ import annotations

import ast
import collections
import functools
import inspect
import logging
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import CodeType
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
from pydantic import BaseModel

from blissng.data import allocate_scan_number
from blissng.data.document import Retention
from blissng.devices.protocols import Movable
from blissng.locks import Holder, current_holder, set_holder
from blissng.redisdb import RedisUrls, async_client
from blissng.redisdb.settings import ObjectSettings, SettingsStore
from blissng.scans import bridge, user_commands
from blissng.scans.bridge import CommandCancelled
from blissng.scans.context import Output, ScanContext, set_context
from blissng.scans.measurement_group import MeasurementGroup
from blissng.scans.scan_saving import ScanSaving, ScanSavingValues

from .command import RunningCommand
from .output import SessionOutput

log = logging.getLogger(__name__)

HISTORY = 20


class SessionError(RuntimeError):
    """A session cannot do what was asked (not started, unknown object, ...)."""


class SessionSettings(BaseModel):
    """Per-session persistent choices."""

    active_mg: str | None = None
    written_ttl: int = 300
    unsaved_ttl: int = 300
    dataset_ttl: int = 86_400


class Session:
    """A named session: namespace, setup, scan saving, numbering, measurement groups, output.

    Parameters: ``config`` (a ``blissng.config.Config``; its objects are built and connected at
    start, each with ``connect_timeout``, a failing one recorded in :attr:`errors` without
    preventing the others), ``objects`` (names to expose; default every object of the
    configuration), ``redis`` (``RedisUrls``: settings for numbering, scan saving and
    measurement groups; data for publishing scans; ``None`` keeps everything in memory),
    ``setup_file`` / ``setup_source`` (Python run in the namespace at start, in a worker
    thread, so it may call scan commands), ``scan_saving`` (default values, e.g.
    ``{"base_path": "/data"}``), ``workflows`` (run a ``blissng.workflows.JobManager`` for
    the session: ``run_job`` in the namespace, ``ascan(..., workflow=...)`` submits jobs).
    """

    def __init__(
        self,
        name: str,
        *,
        config: Any = None,
        objects: Sequence[str] | None = None,
        redis: RedisUrls | None = None,
        setup_file: str | Path | None = None,
        setup_source: str | None = None,
        scan_saving: dict[str, Any] | None = None,
        connect_timeout: float = 5.0,
        workflows: bool = True,
    ) -> None:
        if not name or not name.isidentifier():
            raise SessionError(
                f"session name {name!r} must be a Python identifier (letters, digits, '_')"
            )
        self.name = name
        self.config = config
        self.object_names = list(objects) if objects is not None else None
        self.redis = redis
        self.setup_file = Path(setup_file) if setup_file is not None else None
        self.setup_source = setup_source
        self.connect_timeout = connect_timeout
        self.output = SessionOutput()
        self.namespace: dict[str, Any] = {}
        self.objects: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.setup_error: str | None = None
        self.measurement_groups: dict[str, MeasurementGroup] = {}
        self.scans: collections.deque[Any] = collections.deque(maxlen=HISTORY)
        self.commands: list[RunningCommand] = []
        self._scan_saving_defaults = ScanSavingValues(**(scan_saving or {}))
        self.scan_saving = ScanSaving(name, defaults=self._scan_saving_defaults)
        self._active_mg: MeasurementGroup | None = None
        self._settings_client: Any = None
        self._settings_store: SettingsStore | None = None
        self._session_settings: ObjectSettings[SessionSettings] | None = None
        self.settings = SessionSettings()
        self._tg: anyio.abc.TaskGroup | None = None
        self._local_number = 0
        self.started = False
        self.workflows = workflows
        self.jobs: Any = None  # the session's blissng.workflows.JobManager

    def __repr__(self) -> str:
        return f"<Session {self.name}>"

    # ------------------------------------------------------------------ life cycle

    async def __aenter__(self) -> Session:
        # The job manager's task group is entered first and left last (scopes nest).
        await self._start_jobs()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            await self._start()
        except BaseException as exc:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(type(exc), exc, exc.__traceback__)
            await self._stop_jobs()
            await self._close_clients()
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._tg is not None
        for cmd in self.commands:
            cmd.cancel()
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(*exc_info)
        finally:
            self._tg = None
            self.started = False
            bridge.forget_event_loop(self._token)
            await self._stop_jobs()
            await self._close_clients()

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[Session] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the session until cancelled (``await task_group.start(session.serve)``)."""
        async with self:
            task_status.started(self)
            await anyio.sleep_forever()

    async def _start(self) -> None:
        self._token = anyio.lowlevel.current_token()
        bridge.use_event_loop(self._token)
        if self.redis is not None:
            self._settings_client = async_client(self.redis.settings)
            self._settings_store = SettingsStore(self._settings_client, prefix="settings")
            self._session_settings = self._settings_store.object(
                f"session:{self.name}", SessionSettings
            )
            self.settings = await self._session_settings.load()
            self.scan_saving = ScanSaving(
                self.name, settings=self._settings_store, defaults=self._scan_saving_defaults
            )
            await self.scan_saving.load()
        await self._load_objects()
        self._build_namespace()
        self.started = True
        await self._run_setup()

    async def _start_jobs(self) -> None:
        if not self.workflows:
            return
        from blissng.workflows.manager import JobManager

        try:
            if self.config is not None:
                manager = JobManager.from_config(self.config, self.redis, session=self.name)
            else:
                manager = JobManager(self.redis, session=self.name)
            await manager.__aenter__()
        except Exception as exc:
            self.errors["workflows"] = f"{type(exc).__name__}: {exc}"
            self.output.write(f"WARNING: workflows are not available: {exc}\n")
            return
        self.jobs = manager

    async def _stop_jobs(self) -> None:
        manager, self.jobs = self.jobs, None
        if manager is not None:  # not in a shielded scope: its task group must be innermost
            await manager.__aexit__(None, None, None)

    async def _close_clients(self) -> None:
        if self._settings_client is not None:
            with anyio.CancelScope(shield=True):
                await self._settings_client.aclose()
            self._settings_client = None

    # ------------------------------------------------------------------ objects

    async def _load_objects(self) -> None:
        config = self.config
        if config is None:
            return
        names = self.object_names if self.object_names is not None else config.names()
        for name in names:
            try:
                self.objects[name] = config.get(name)
            except Exception as exc:
                self.errors[name] = f"{type(exc).__name__}: {exc}"
        async with anyio.create_task_group() as tg:
            for name, obj in list(self.objects.items()):
                tg.start_soon(self._connect, name, obj)
        for name, obj in self.objects.items():
            if isinstance(obj, MeasurementGroup):
                self.measurement_groups[name] = obj
        for name, error in self.errors.items():
            self.output.write(f"WARNING: {name} is not available: {error}\n")
        wanted = self.settings.active_mg
        if wanted in self.measurement_groups:
            self._active_mg = self.measurement_groups[wanted]
        elif self.measurement_groups:
            self._active_mg = next(iter(self.measurement_groups.values()))

    async def _connect(self, name: str, obj: Any) -> None:
        connect = getattr(obj, "connect", None)
        if connect is None or not inspect.iscoroutinefunction(connect):
            return
        try:
            with anyio.fail_after(self.connect_timeout):
                await connect()
        except TimeoutError:
            self.errors[name] = f"did not connect within {self.connect_timeout:g} s"
        except Exception as exc:
            self.errors[name] = f"{type(exc).__name__}: {exc}"

    def add_object(self, name: str, obj: Any) -> None:
        """Expose ``obj`` as ``name`` in the namespace (and as a motor or MG if it is one)."""
        self.objects[name] = obj
        if isinstance(obj, MeasurementGroup):
            self.measurement_groups[name] = obj
            if self._active_mg is None:
                self._active_mg = obj
        self.namespace[name] = obj
        self.namespace["ACTIVE_MG"] = self._active_mg

    @property
    def motors(self) -> list[Any]:
        """The exposed objects that move (snapshotted at each scan's start, listed by wa())."""
        return [obj for obj in self.objects.values() if isinstance(obj, Movable)]

    # ------------------------------------------------------------------ measurement groups

    @property
    def active_mg(self) -> MeasurementGroup | None:
        return self._active_mg

    async def set_active_mg(self, mg: MeasurementGroup | str) -> MeasurementGroup:
        """Make ``mg`` (a group or its name) the active measurement group, persistently."""
        if isinstance(mg, str):
            if mg not in self.measurement_groups:
                raise SessionError(
                    f"no measurement group {mg!r} in session {self.name}; "
                    f"it has {', '.join(self.measurement_groups) or 'none'}"
                )
            mg = self.measurement_groups[mg]
        self.measurement_groups.setdefault(mg.name, mg)
        self._active_mg = mg
        self.namespace["ACTIVE_MG"] = mg
        if self._session_settings is not None:
            self.settings = await self._session_settings.set(active_mg=mg.name)
        return mg

    # ------------------------------------------------------------------ scans

    async def next_scan_number(self) -> int:
        """The next scan number, atomic and persistent in the settings Redis."""
        if self._settings_client is not None:
            return await allocate_scan_number(self._settings_client, self.name)
        self._local_number += 1
        return self._local_number

    @property
    def last_scan(self) -> Any:
        return self.scans[-1] if self.scans else None

    def _on_scan(self, scan: Any) -> None:
        self.scans.append(scan)
        self.namespace["SCANS"] = self.scans

    def scan_context(self, output: Output | None = None) -> ScanContext:
        """The context the scans layer runs this session's commands in."""
        return ScanContext(
            session=self.name,
            redis=self.redis,
            scan_saving=self.scan_saving,
            output=output if output is not None else self.output,
            next_scan_number=self.next_scan_number,
            motors=lambda: self.motors,
            active_mg=lambda: self._active_mg,
            on_scan=self._on_scan,
            last_scan=lambda: self.last_scan,
            retention=Retention(
                written_ttl=self.settings.written_ttl,
                unsaved_ttl=self.settings.unsaved_ttl,
                dataset_ttl=self.settings.dataset_ttl,
            ),
        )

    # ------------------------------------------------------------------ namespace

    def _build_namespace(self) -> None:
        ns = self.namespace
        ns.update(user_commands())
        ns.update(self.objects)
        ns.update(
            {
                "session": self,
                "SCAN_SAVING": self.scan_saving,
                "newdataset": self.scan_saving.newdataset,
                "ACTIVE_MG": self._active_mg,
                "SCANS": self.scans,
                "set_active_mg": bridge.command(self.set_active_mg),
                "MeasurementGroup": self._make_mg,
                "last_error": self._last_error,
            }
        )
        if self.jobs is not None:
            ns["run_job"] = self.jobs.run_job
            ns["JOBS"] = self.jobs.jobs

    def _last_error(self) -> None:
        """``last_error()``: the full traceback of the last command that failed."""
        text = "".join(self.last_error) if self.last_error else "no error so far\n"
        self.output.write(text)

    def _make_mg(self, name: str, *counters: Any) -> MeasurementGroup:
        """``MeasurementGroup("MG2", diode, scaler)`` at the prompt: a new group, exposed."""
        mg = MeasurementGroup(name, counters, settings=self._settings_store)
        self.add_object(name, mg)
        return mg

    # ------------------------------------------------------------------ running commands

    def submit(
        self,
        func: Callable[..., Any],
        *args: Any,
        output: Output | None = None,
        text: str = "",
    ) -> RunningCommand:
        """Run ``func(*args)`` as a command of this session and return its handle at once.

        Coroutine functions run on the event loop; plain functions (user code) in a worker
        thread, where scan commands block. The command is owned by the session's task group:
        the caller going away does not stop it; ``cmd.cancel()`` does.
        Call from the event loop thread.
        """
        if self._tg is None:
            raise SessionError(f"session {self.name} is not started (use `async with session`)")
        cmd = RunningCommand(text or getattr(func, "__name__", repr(func)))
        self.commands = [c for c in self.commands if not c.done]
        self.commands.append(cmd)
        self._tg.start_soon(self._run_command, cmd, func, args, output)
        return cmd

    async def run(self, func: Callable[..., Any], *args: Any, output: Output | None = None) -> Any:
        """``submit`` and wait for the result (cancelling the caller cancels the command)."""
        return await _wait_cancelling(self.submit(func, *args, output=output))

    def submit_source(self, source: str, *, output: Output | None = None) -> RunningCommand:
        """Run Python ``source`` in the namespace as a command (what a console does).

        Code with a top-level ``await`` runs on the event loop; other code in a worker thread.
        The value of a final expression is the command's result.
        """
        code, is_async = compile_source(source)
        if is_async:

            async def run_async() -> Any:
                return await eval(code, self.namespace)

            func: Callable[..., Any] = run_async
        else:
            func = functools.partial(eval, code, self.namespace)
        return self.submit(func, output=output, text=source)

    async def execute(self, source: str, *, output: Output | None = None) -> Any:
        """``submit_source`` and wait for the result."""
        return await _wait_cancelling(self.submit_source(source, output=output))

    async def _run_command(
        self,
        cmd: RunningCommand,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        output: Output | None,
    ) -> None:
        context = self.scan_context(output)
        set_context(context)
        # Device locks taken by the command name this session, the caller's console (an API
        # client sets one with holding_as) and the command.
        caller = current_holder()
        console = caller.console if caller.session == self.name else ""
        set_holder(Holder(self.name, console or "session", cmd.text[:80]))
        cmd.state = "running"
        result: Any = None
        try:
            with cmd.scope:
                if inspect.iscoroutinefunction(func):
                    result = await func(*args)
                else:
                    result = await anyio.to_thread.run_sync(
                        self._in_thread, cmd, context, func, args
                    )
                if inspect.isawaitable(result):
                    result = await result
        except CommandCancelled as exc:
            cmd._finish("cancelled", error=exc)
            return
        except Exception as exc:
            cmd._finish("failed", error=exc)
            context.print(f"!!! === {type(exc).__name__}: {exc} === !!!")
            log.debug("command %r failed", cmd.text, exc_info=True)
            self.last_error = traceback.format_exception(exc)
            return
        except BaseException as exc:  # the session is stopping: record, then let it go
            cmd._finish("cancelled", error=CommandCancelled(f"{cmd.text} cancelled"))
            raise exc
        if cmd.scope.cancelled_caught or isinstance(result, _Cancelled):
            cmd._finish("cancelled", error=CommandCancelled(f"{cmd.text} cancelled"))
        else:
            cmd._finish("done", result=result)

    last_error: list[str] | None = None

    @staticmethod
    def _in_thread(
        cmd: RunningCommand, context: ScanContext, func: Callable[..., Any], args: tuple[Any, ...]
    ) -> Any:
        cmd._enter_thread()
        try:
            try:
                return func(*args)
            finally:
                cmd._leave_thread()
        except CommandCancelled:
            return _Cancelled()

    # ------------------------------------------------------------------ setup

    async def _run_setup(self) -> None:
        source = self.setup_source
        filename = "<setup>"
        if source is None and self.setup_file is not None:
            path = self.setup_file
            filename = str(path)
            try:
                source = await anyio.to_thread.run_sync(path.read_text)
            except OSError as exc:
                self.setup_error = f"cannot read the setup script {path}: {exc.strerror or exc}"
                self.output.write(f"!!! setup of {self.name}: {self.setup_error}\n")
                return
        if not source:
            return
        try:
            code = compile(source, filename, "exec")
        except SyntaxError as exc:
            self.setup_error = f"SyntaxError in {filename}, line {exc.lineno}: {exc.msg}"
            self.output.write(f"!!! setup of {self.name}: {self.setup_error}\n")
            return
        cmd = self.submit(functools.partial(exec, code, self.namespace), text=f"setup {filename}")
        try:
            await cmd.wait()
        except BaseException as exc:
            if not isinstance(exc, Exception | CommandCancelled):
                raise
            self.setup_error = f"{type(exc).__name__}: {exc}"
            self.output.write(f"!!! setup of {self.name} failed: {self.setup_error}\n")

    def summary(self) -> dict[str, Any]:
        """A JSON-able description for APIs and GUIs (no I/O)."""
        last = self.last_scan
        saving = {**self.scan_saving.values.model_dump(), "filename": self.scan_saving.filename}
        return {
            "name": self.name,
            "started": self.started,
            "objects": sorted(self.objects),
            "motors": [m.name for m in self.motors],
            "errors": dict(self.errors),
            "setup_error": self.setup_error,
            "measurement_groups": sorted(self.measurement_groups),
            "active_mg": self._active_mg.name if self._active_mg is not None else None,
            "scan_saving": saving,
            "last_scan": None
            if last is None
            else {"number": last.number, "title": last.title, "state": last.state,
                  "scan_id": last.scan_id},
            "commands": [
                {"id": c.id, "text": c.text, "state": c.state} for c in self.commands if not c.done
            ],
        }  # fmt: skip

    def __info__(self) -> str:
        lines = [f"Session {self.name}", f"  objects: {', '.join(self.objects) or 'none'}"]
        if self.errors:
            lines.append(f"  unavailable: {', '.join(self.errors)}")
        mg = self._active_mg.name if self._active_mg is not None else "none"
        lines.append(f"  active measurement group: {mg}")
        lines.append(f"  saving to: {self.scan_saving.filename}")
        return "\n".join(lines)


class _Cancelled:
    """What a worker thread returns when its code was interrupted by a cancel."""


def compile_source(source: str) -> tuple[CodeType, bool]:
    """Compile console input: an expression (its value is the result) or statements.
    Returns the code and whether it uses top-level ``await`` (then eval returns a coroutine)."""
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    try:
        code = compile(source, "<input>", "eval", flags=flags)
    except SyntaxError:
        code = compile(source, "<input>", "exec", flags=flags)
    return code, bool(code.co_flags & inspect.CO_COROUTINE)


async def _wait_cancelling(cmd: RunningCommand) -> Any:
    """The command's result, for a caller that owns it: cancelling the caller cancels the
    command (a console's ``wait()`` does not: its command outlives a dropped connection)."""
    try:
        return await cmd.wait()
    except anyio.get_cancelled_exc_class():
        cmd.cancel()
        raise
