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
``blissng.scans.ScanContext`` made current for each command.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
from pydantic import BaseModel

from blissng.config import connect_objects
from blissng.data import Retention, allocate_scan_number, next_scan_number
from blissng.devices import Movable
from blissng.errors import BlissngError
from blissng.locks import LockManager, current_holder
from blissng.redisdb import ObjectSettings, RedisUrls, SettingsStore, async_client
from blissng.scans import (
    MeasurementGroup,
    Output,
    PlotSelection,
    ScanContext,
    ScanHistory,
    ScanHooks,
    ScanSaving,
    ScanSavingValues,
    command,
    use_context,
    user_commands,
)

from ._command import CommandRunner, RunningCommand
from ._facade import synchronous
from ._output import SessionOutput
from ._setup import run_setup

log = logging.getLogger(__name__)

HISTORY = 20


class SessionError(BlissngError, RuntimeError):
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

    ``locks`` (a :class:`~blissng.locks.LockManager`) and ``scan_hooks`` (a
    :class:`~blissng.scans.ScanHooks`) are what the session's scans share with others:
    a server gives its sessions its own (:meth:`Server.start_session`), so that sessions of
    one server see each other's device locks and the server sees their scans; a session on
    its own has its own.
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
        locks: LockManager | None = None,
        scan_hooks: ScanHooks | None = None,
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
        self.locks = locks if locks is not None else LockManager()
        self.scan_hooks = scan_hooks if scan_hooks is not None else ScanHooks()
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self.output = SessionOutput()
        self.namespace: dict[str, Any] = {}
        self.objects: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.setup_error: str | None = None
        self.measurement_groups: dict[str, MeasurementGroup] = {}
        # SCANS: the session's last scans, read from the data Redis (live ones as objects)
        self.scans = ScanHistory(name, maxlen=HISTORY)
        self.plot = PlotSelection(name)  # plotselect / plotinit
        self._scan_saving_defaults = ScanSavingValues(**(scan_saving or {}))
        self.scan_saving = ScanSaving(name, defaults=self._scan_saving_defaults)
        self._active_mg: MeasurementGroup | None = None
        self._settings_client: Any = None
        self._settings_store: SettingsStore | None = None
        self._session_settings: ObjectSettings[SessionSettings] | None = None
        self.settings = SessionSettings()
        self.runner = CommandRunner(
            name, self.namespace, output=self.output, context=self._command_context
        )
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
        await self.runner.__aenter__()
        try:
            await self._start()
        except BaseException as exc:
            await self.runner.__aexit__(type(exc), exc, exc.__traceback__)
            await self._stop_jobs()
            await self._close_clients()
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        try:
            return await self.runner.__aexit__(*exc_info)
        finally:
            self.started = False
            self._token = None
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
            self.plot = PlotSelection(self.name, settings=self._settings_store)
            await self.plot.load()
            self.scans.redis_url = self.redis.data
            await self.scans.refresh()
        await self._load_objects()
        self._build_namespace()
        self.started = True
        await self._run_setup()

    async def _start_jobs(self) -> None:
        if not self.workflows:
            return
        from blissng.workflows import JobManager

        try:
            if self.config is not None:
                manager = JobManager.from_config(
                    self.config, self.redis, session=self.name, scan_hooks=self.scan_hooks
                )
            else:
                manager = JobManager(self.redis, session=self.name, scan_hooks=self.scan_hooks)
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
        timeout = self.connect_timeout
        for name, failure in (await connect_objects(dict(self.objects), timeout)).items():
            if isinstance(failure, TimeoutError):
                self.errors[name] = f"did not connect within {timeout:g} s"
            else:
                self.errors[name] = f"{type(failure).__name__}: {failure}"
        for name, obj in self.objects.items():
            if isinstance(obj, MeasurementGroup):
                self.measurement_groups[name] = obj
        for name, problem in self.errors.items():
            self.output.write(f"WARNING: {name} is not available: {problem}\n")
        wanted = self.settings.active_mg
        if wanted in self.measurement_groups:
            self._active_mg = self.measurement_groups[wanted]
        elif self.measurement_groups:
            self._active_mg = next(iter(self.measurement_groups.values()))

    def add_object(self, name: str, obj: Any) -> None:
        """Expose ``obj`` as ``name`` in the namespace (and as a motor or MG if it is one),
        with the synchronous facade (:func:`~blissng.session.synchronous`)."""
        self.objects[name] = synchronous(obj)
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

    async def next_scan_number(self, dataset_file: str | None = None) -> int:
        """The next scan number: atomic and persistent in the settings Redis, and above every
        number used beside ``dataset_file`` on disk (numbers never go back in a data
        directory, even after a Redis that lost them, or with another server's scans there)."""
        client = self._settings_client

        async def allocate(at_least: int) -> int:
            if client is not None:
                return await allocate_scan_number(client, self.name, at_least=at_least)
            self._local_number = max(self._local_number + 1, at_least)
            return self._local_number

        return await next_scan_number(allocate, dataset_file)

    @property
    def last_scan(self) -> Any:
        return self.scans.last

    def _on_scan(self, scan: Any) -> None:
        self.scans.record(scan)

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
            objects=lambda: self.objects,
            plot=self.plot,
            locks=self.locks,
            hooks=self.scan_hooks,
            loop=self._token,
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
        for obj in self.objects.values():
            synchronous(obj)  # m1.move(2), m1.velocity = 2 without await in user code
        ns.update(self.objects)
        ns.update(
            {
                "session": self,
                "SCAN_SAVING": self.scan_saving,
                "ACTIVE_MG": self._active_mg,
                "SCANS": self.scans,
                "set_active_mg": command(self.set_active_mg),
                "MeasurementGroup": self._make_mg,
            }
        )
        if self.jobs is not None:
            ns["run_job"] = self.jobs.run_job
            ns["JOBS"] = self.jobs.jobs

    def _make_mg(self, name: str, *counters: Any) -> MeasurementGroup:
        """``MeasurementGroup("MG2", diode, scaler)`` at the prompt: a new group, exposed."""
        mg = MeasurementGroup(name, counters, settings=self._settings_store)
        self.add_object(name, mg)
        return mg

    # ------------------------------------------------------------------ running commands

    @property
    def commands(self) -> list[RunningCommand]:
        """The running and recent commands of every console, the API and the session."""
        return self.runner.commands

    def _command_context(self, cmd: RunningCommand) -> contextlib.AbstractContextManager[Any]:
        """What every command runs in: this session's scan context, printing to the command."""
        return use_context(self.scan_context(cmd))

    def _origin(self) -> str:
        """Who submits: the caller's console when it holds devices as this session (an API
        client, a console), else the session itself."""
        caller = current_holder()
        return (caller.console if caller.session == self.name else "") or "session"

    def submit(
        self,
        func: Callable[..., Any],
        *args: Any,
        output: Output | None = None,
        text: str = "",
    ) -> RunningCommand:
        """Run ``func(*args)`` as a command of this session and return its handle at once.

        Coroutine functions run on the event loop; plain functions (user code) in a worker
        thread, where scan commands block. The command is owned by the session's runner:
        the caller going away does not stop it; ``cmd.cancel()`` does. Call from the event
        loop thread.
        """
        self._check_started()
        return self.runner.submit(func, *args, output=output, origin=self._origin(), text=text)

    async def run(self, func: Callable[..., Any], *args: Any, output: Output | None = None) -> Any:
        """``submit`` and wait for the result (cancelling the caller cancels the command)."""
        return await _wait_cancelling(self.submit(func, *args, output=output))

    def submit_source(
        self, source: str, *, output: Output | None = None, origin: str | None = None
    ) -> RunningCommand:
        """Run Python ``source`` in the namespace as typed at a console (one rule for every
        way in: :class:`~blissng.session.CommandRunner`). Raises SyntaxError at once."""
        self._check_started()
        return self.runner.submit_source(source, output=output, origin=origin or self._origin())

    async def execute(self, source: str, *, output: Output | None = None) -> Any:
        """``submit_source`` and wait for the result."""
        return await _wait_cancelling(self.submit_source(source, output=output))

    def _check_started(self) -> None:
        if not self.runner.running:
            raise SessionError(f"session {self.name} is not started (use `async with session`)")

    # ------------------------------------------------------------------ setup

    async def _run_setup(self) -> None:
        error = await run_setup(self.runner, self.setup_source, self.setup_file, self.output)
        if error is not None:
            self.setup_error = error

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


async def _wait_cancelling(cmd: RunningCommand) -> Any:
    """The command's result, for a caller that owns it: cancelling the caller cancels the
    command (a console's ``wait()`` does not: its command outlives a dropped connection)."""
    try:
        return await cmd.wait()
    except anyio.get_cancelled_exc_class():
        cmd.cancel()
        raise
