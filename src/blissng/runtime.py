"""The process of ``blissng serve`` and ``blissng demo``, below the command line that parses
their arguments (:mod:`blissng.cli`).

Redis starts first (embedded servers, synchronously, in the main thread: see
:mod:`blissng.redisdb`), then one anyio event loop (:func:`run_main`) loads the
configuration, connects its objects (:func:`blissng.config.connect_objects`), runs the server
(:class:`blissng.session.Server`: sessions, background tasks, writer, web app and API)
and either waits for SIGTERM/SIGINT (headless: standard input or output is not a terminal, as
under CI or a service manager) or shows a console of a session on this terminal: the same
console as a browser tab or ``blissng shell SESSION``
(:func:`blissng.shell.attach_local`). Shutdown is driven by an event, not by
cancellation, so it runs in order: devices closed, simulators stopped, Redis stopped, however
the loop ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from blissng.config import CONNECT_TIMEOUT, Config, close_objects, connect_objects, failure_text
from blissng.data import give_up_on_redis
from blissng.errors import BlissngError
from blissng.redisdb import RedisStack, SettingsStore, async_client, start_redis

if TYPE_CHECKING:
    from blissng.shell import ShellHub
    from blissng.web import WebOptions

log = logging.getLogger("blissng")


class CliError(BlissngError):
    """A problem the user can fix; printed as one line without traceback."""


console_log: Any = None
"""While this terminal shows a console: the stream the command line's log lines go to, so
that they print above its prompt instead of across it."""


@contextlib.contextmanager
def running_redis(state_dir: Path, url: str | None) -> Iterator[RedisStack]:
    """Redis for the process: embedded servers in ``state_dir`` (or the server at ``url``),
    stopped on leaving."""
    started = time.perf_counter()
    stack = start_redis(state_dir, url=url)
    try:
        where = "embedded" if stack.embedded else f"external ({url})"
        log.debug("Redis %s in %.3f s", where, time.perf_counter() - started)
        yield stack
    finally:
        stack.stop()


# SIGTERM/SIGINT received while the event loop does not listen for them (before it runs,
# while it starts, while Redis stops): remembered here and acted on at the next point that
# looks. Never raised from the handler: an exception raised by a signal handler lands in
# whatever Python code runs at that instant (an import, where it turns into another error;
# an asyncio callback, which logs and swallows it: the signal was then lost and the demo
# went on starting, the "SIGTERM during start-up" bug).
_received: list[int] = []


def _note_signal(signum: int, frame: object) -> None:
    _received.append(signum)


Extras = Callable[[], contextlib.AbstractAsyncContextManager[Any]]


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """What ``blissng serve`` and ``blissng demo`` run (:mod:`blissng.cli` parses them)."""

    config_dir: Path
    state_dir: Path  # the embedded Redis's files, the server's logs and web.json
    redis_url: str | None = None  # one external Redis instead of the embedded ones
    headless: bool = False  # no console on this terminal, even if it is one
    console_session: str | None = None  # this terminal's console's session (default: the first)
    default_session: str = "main"  # the session of a configuration that declares none
    web: WebOptions | None = None  # None: no web app, no API (nothing can attach)


def serve(options: RunOptions, extras: Extras | None = None) -> int:
    """Run ``blissng serve`` (``extras``: what ``demo`` starts beside, its simulators) until
    it stops; returns the exit code."""
    interactive = sys.stdin.isatty() and sys.stdout.isatty() and not options.headless
    stopping = (signal.SIGTERM, signal.SIGINT)
    _received.clear()
    previous = {signum: signal.signal(signum, _note_signal) for signum in stopping}
    import psutil  # noqa: F401  (used once ready, on the loop: imported before it starts)

    failure: str | None = None
    try:
        with running_redis(options.state_dir, options.redis_url) as stack:
            if _received:  # while Redis started (a few tenths of a second at most)
                log.info("%s during start-up: stopping", signal.Signals(_received[0]).name)
            else:
                failure = anyio.run(run_main, options, stack, interactive, extras)
            # The loop gave the signals back to their defaults: Redis stops undisturbed.
            for signum in stopping:
                signal.signal(signum, _note_signal)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("stopped")
    if failure:  # the last line says why, whatever was logged before it
        print(f"blissng: error: {failure}; blissng stopped", file=sys.stderr, flush=True)
        return 1
    return 0


async def run_main(
    options: RunOptions,
    stack: RedisStack,
    interactive: bool,
    extras: Extras | None = None,
) -> str | None:
    """The process's runtime, on the event loop; Redis is already running (``stack``).

    Enters ``extras`` (the demo's simulators), loads the configuration, connects its objects,
    logs ``ready``, then runs until SIGTERM/SIGINT (headless) or until the local shell exits
    (SIGTERM/SIGHUP also stop it). Returns why it failed (an embedded Redis server died), or
    None.
    """
    started = time.perf_counter()
    stop = anyio.Event()  # set by the signals: shutdown runs uncancelled, in order
    reasons: list[str] = []  # why it stops: a signal, a dead Redis (the first one counts)

    def stop_for(reason: str) -> None:
        reasons.append(reason)
        stop.set()

    async with anyio.create_task_group() as tg:
        if interactive:
            await tg.start(_on_signals, stop_for, (signal.SIGTERM, signal.SIGHUP))
        else:
            await tg.start(_on_signals, stop_for, (signal.SIGTERM, signal.SIGINT))
        if _received:  # before the loop listened (the handlers are installed now)
            log.info("%s during start-up: stopping", signal.Signals(_received[0]).name)
            stop_for(signal.Signals(_received[0]).name)
        failures: list[str] = []
        await tg.start(_watch_redis, stack, stop_for, failures)

        settings_client = async_client(stack.urls.settings)
        objects: dict[str, Any] = {}
        extras_up, release_extras, extras_down = anyio.Event(), anyio.Event(), anyio.Event()
        # The extras start while the configuration loads (simulators are slow).
        if extras is not None and not stop.is_set():
            tg.start_soon(_hold, extras, extras_up, release_extras, extras_down, started)
        else:
            extras_up.set()
            extras_down.set()
        try:
            async with contextlib.AsyncExitStack() as resources:
                resources.callback(release_extras.set)  # after the objects are closed
                resources.push_async_callback(_close_logged, objects)
                with anyio.CancelScope() as starting:  # a stop during start-up aborts it
                    tg.start_soon(_cancel_when_set, stop, starting)
                    async with anyio.create_task_group() as startup:
                        if interactive:  # Ctrl-C aborts a start-up; the prompt takes it over
                            await startup.start(_on_signals, stop_for, (signal.SIGINT,))
                        config = await Config.open(
                            options.config_dir, settings=SettingsStore(settings_client)
                        )
                        objects.update(build_objects(config))
                        await extras_up.wait()
                        await _connect_logged(objects)
                        startup.cancel_scope.cancel()
                if interactive:  # asyncio gave SIGINT back to KeyboardInterrupt
                    signal.signal(signal.SIGINT, _note_signal)
                if starting.cancelled_caught:
                    log.info("start-up abandoned")
                else:
                    await _run_ready(options, stack, config, objects, interactive, stop, reasons)
        finally:
            with anyio.CancelScope(shield=True):
                await settings_client.aclose()
        await extras_down.wait()  # the extras stop in their own time, not cancelled
        tg.cancel_scope.cancel()
    return failures[0] if failures else None


async def _run_ready(
    options: RunOptions,
    stack: RedisStack,
    config: Config,
    objects: dict[str, Any],
    interactive: bool,
    stop: anyio.Event,
    reasons: list[str],
) -> None:
    """Everything is up: start the server (sessions, background tasks, writer, web app and
    API: blissng.session.Server), say so, then serve until ``stop`` (or until the console on
    this terminal ends); leaving the server stops them in order before the devices are
    closed."""
    from blissng.session import Server
    from blissng.shell import ShellHub
    from blissng.web import web_runner

    server = Server(
        config,
        stack.urls,
        state_dir=options.state_dir,
        web=None if options.web is None else web_runner(options.web),
        default_session=options.default_session,
    )
    hub = ShellHub(log_dir=options.state_dir / "logs")
    async with contextlib.AsyncExitStack() as running:
        if (
            interactive or options.web is not None
        ):  # the consoles of every session: tabs, this terminal
            server.hub = hub
            await running.enter_async_context(hub)
        await running.enter_async_context(server)
        log.info(
            "ready in %.2f s: %d objects from %s; redis settings=%s data=%s",
            _since_process_start(),
            len(objects),
            options.config_dir,
            stack.urls.settings,
            stack.urls.data,
        )
        if interactive:
            await run_local_console(server, hub, options.console_session, stop)
        else:
            await stop.wait()
        # What the scans cancelled now record: "aborted: the server stopped (SIGTERM)".
        server.stop_reason = reasons[0] if reasons else "its console was closed"


async def _cancel_when_set(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _hold(
    extras: Extras,
    entered: anyio.Event,
    release: anyio.Event,
    done: anyio.Event,
    started: float,
) -> None:
    """Enter ``extras()``, say so, and leave it only when released."""
    try:
        async with extras():
            log.debug("extras started in %.3f s", time.perf_counter() - started)
            entered.set()
            await release.wait()
    finally:
        done.set()


def _since_process_start() -> float:
    """Seconds since this process was created (interpreter start and imports included)."""
    import psutil

    return time.time() - psutil.Process().create_time()


def build_objects(config: Config) -> dict[str, Any]:
    """Every object that builds; each failure logged as one line (the others still load)."""
    objects = config.build_all()
    for error in config.errors:
        log.error("%s", error)
    return objects


async def _connect_logged(objects: dict[str, Any]) -> None:
    """Connect every object; each failure logged as one line (the others still connect)."""
    for name, error in (await connect_objects(objects, CONNECT_TIMEOUT)).items():
        log.error("%s: %s", name, failure_text("connect", error, CONNECT_TIMEOUT))


async def _close_logged(objects: dict[str, Any]) -> None:
    """Close every object (shielded); each failure logged as one line."""
    for name, error in (await close_objects(objects, CONNECT_TIMEOUT)).items():
        log.error("%s: %s", name, failure_text("close", error, CONNECT_TIMEOUT))


async def _on_signals(
    stop: Callable[[str], object],
    signals: Sequence[signal.Signals],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    with anyio.open_signal_receiver(*signals) as received:
        task_status.started()
        stopping = False
        async for signum in received:  # listening until the end: a second signal is
            if stopping:  # not left to the default action (death without clean-up)
                log.info("%s: already stopping", signal.Signals(signum).name)
                continue
            log.info("%s: stopping", signal.Signals(signum).name)
            stopping = True
            stop(signal.Signals(signum).name)


async def _watch_redis(
    stack: RedisStack,
    stop: Callable[[str], object],
    failures: list[str],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """An embedded server that dies stops everything with an error, rather than leaving every
    Redis call to fail on its own. Checked at each SIGCHLD (any child's exit). What waited
    for that Redis stops waiting at once (a publisher would retry for 30 s): the stop takes
    seconds, and the scans say why they failed."""
    if not stack.embedded:
        task_status.started()
        return
    with anyio.open_signal_receiver(signal.SIGCHLD) as received:
        task_status.started()
        async for _ in received:
            for proc in stack.processes:
                if proc.process.poll() is not None:
                    failure = (
                        f"redis-server ({proc.role}) exited with code "
                        f"{proc.process.returncode}; see {proc.logfile}"
                    )
                    log.error("%s; stopping", failure)
                    give_up_on_redis(proc.url, f"the {proc.role} Redis is gone ({failure})")
                    failures.append(failure)
                    stop(failure)
                    return


async def run_local_console(
    server: Any, hub: ShellHub, session: str | None, stop: anyio.Event
) -> None:
    """A console of a session on this terminal, as in a browser tab: ``demo [1]:``, the
    session's namespace, Ctrl-C interrupting the running command. Returns when the console
    ends (Ctrl-D, ``exit()``: the server then stops) or when ``stop`` is set (SIGTERM,
    SIGHUP: the running command is cancelled with the session). A SIGINT from outside
    interrupts the running command like Ctrl-C (between commands it only logs)."""
    from blissng.shell import ConsoleLog, attach_local, terminal_size

    global console_log
    name = session or next(iter(server.sessions), None)
    if name is None:
        log.error("no session to open a console in: running headless (stop with SIGTERM)")
        await stop.wait()
        return
    if name not in server.sessions:
        known = ", ".join(server.sessions)
        raise CliError(f"no session {name!r} in this server (sessions: {known}): --session NAME")
    rows, columns = terminal_size(sys.stdout.fileno())
    console = await hub.get(name).open("terminal", rows=rows, columns=columns)
    where = f"; the same console in a browser: {server.url}" if server.url else ""
    print(f"session {name}: Ctrl-D leaves and stops the server{where}", flush=True)

    async def on_sigint(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGINT) as received:
            task_status.started()
            async for _ in received:
                if console.busy:
                    console.interrupt()
                else:
                    log.info("Ctrl-C: no command is running (Ctrl-D leaves the console)")

    console_log = ConsoleLog(console)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(on_sigint)
            tg.start_soon(_cancel_when_set, stop, tg.cancel_scope)
            await attach_local(console, stdin_fd=sys.stdin.fileno(), stdout_fd=sys.stdout.fileno())
            tg.cancel_scope.cancel()
    finally:
        console_log = None
        console.close()
        signal.signal(signal.SIGINT, _note_signal)  # while stopping, as while starting
