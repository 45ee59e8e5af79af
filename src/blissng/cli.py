"""The ``blissng`` command: ``version``, ``check``, ``redis``, ``serve`` and ``demo``.

``serve`` and ``demo`` start Redis first (embedded servers, synchronously, in the main thread:
see :mod:`blissng.redisdb.server`), then run one anyio event loop (:func:`run_main`) that loads
the configuration, connects the devices and either waits for SIGTERM/SIGINT (headless:
standard input or output is not a terminal, as under CI or a service manager) or runs a local
Python shell. Shutdown is driven by an event, not by cancellation, so it runs in order:
devices closed, simulators stopped, Redis stopped, however the loop ends.

Errors print as one line (``blissng: error: ...``) with exit code 1; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import anyio
import anyio.abc

import blissng
from blissng.config import Config, ConfigError
from blissng.redisdb import RedisError, RedisStack, async_client, default_state_dir, start_redis
from blissng.redisdb.server import find_redis_server, redis_version
from blissng.redisdb.settings import SettingsStore

log = logging.getLogger("blissng")

CONNECT_TIMEOUT = 5.0


class CliError(Exception):
    """A problem the user can fix; printed as one line without traceback."""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line that says where to look."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks and debug logs",
    )
    parser = _Parser(
        prog="blissng",
        description="Beamline control and data acquisition on asyncio (a BLISS successor).",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    commands.add_parser(
        "version", parents=[common], help="print the versions of blissng, Python and Redis"
    )

    redis = commands.add_parser(
        "redis",
        parents=[common],
        help="start the embedded Redis servers in the foreground and print their URLs",
    )
    _state_dir_option(redis, "redis")

    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="start a beamline from a configuration directory",
        description="Start Redis (embedded unless --redis), load the configuration and run "
        "until SIGTERM/SIGINT (headless) or until the local shell exits.",
    )
    serve.add_argument(
        "--config", required=True, type=Path, metavar="DIR", help="the directory of YAML files"
    )
    _runtime_options(serve, "one per configuration directory")

    check = commands.add_parser(
        "check",
        parents=[common],
        help="read a configuration directory and build its objects, listing every problem",
        description="Build every object of the configuration (without connecting to any "
        "hardware or Redis); print each problem on one line; exit 1 if there is any.",
    )
    check.add_argument(
        "--config", required=True, type=Path, metavar="DIR", help="the directory of YAML files"
    )

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="start the built-in simulated beamline",
        description="Like 'serve', on the simulated beamline shipped with blissng.",
    )
    _runtime_options(demo, "demo")

    # Delegated to the services' own parsers (see main()): listed here for --help.
    commands.add_parser(
        "writer", add_help=False, help="run the HDF5 writer service: blissng writer --redis URL"
    )
    commands.add_parser(
        "shell",
        add_help=False,
        help="attach this terminal to a session of the running server: blissng shell SESSION",
    )
    commands.add_parser(
        "worker",
        add_help=False,
        help="run a workflows (Celery) worker: blissng worker --redis URL --queue NAME",
    )
    return parser


def _delegated(command: str) -> Callable[[list[str]], int] | None:
    """``blissng writer|worker|shell ...``: the service's own command line."""
    if command == "shell":
        from blissng.web.shell_command import main as shell_main

        return shell_main
    if command == "writer":
        from blissng.writer.__main__ import main as writer_main

        return writer_main
    if command == "worker":
        from blissng.workflows.worker import main as worker_main

        return lambda argv: worker_main(argv)
    return None


def _state_dir_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help=f"where the embedded Redis keeps its files (default: {default_state_dir(default)})",
    )


def _runtime_options(parser: argparse.ArgumentParser, default_state: str) -> None:
    parser.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get("BLISSNG_REDIS_URL") or None,
        help="use this Redis server for everything instead of starting the embedded ones "
        "(default: $BLISSNG_REDIS_URL)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help=f"where the embedded Redis keeps its files (default: {default_state} under "
        f"{default_state_dir('')})",
    )
    parser.add_argument(
        "--headless",
        action="store_true",
        help="no local shell even on a terminal: run until SIGTERM/SIGINT (the default when "
        "standard input or output is not a terminal)",
    )
    from blissng.web.serve import add_web_options

    add_web_options(parser)
    parser.add_argument(
        "--no-web", action="store_true", help="no web shell and no API (nothing can attach)"
    )


# ---------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    delegated = _delegated(argv[0]) if argv else None
    if delegated is not None:
        return delegated(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    _setup_logging(debug)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    handler = {
        "version": cmd_version,
        "redis": cmd_redis,
        "serve": cmd_serve,
        "demo": cmd_demo,
        "check": cmd_check,
    }
    try:
        return handler[args.command](args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if debug:
            raise
        print(f"blissng: error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]  # a task group's single failure: say what it was
    if isinstance(exc, CliError | ConfigError | RedisError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc} (run with --debug for the traceback)"
    return " ".join(text.split())


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time, so that log lines go through the
    local shell's patched stderr and print above the prompt instead of across it."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging(debug: bool) -> None:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler])
    if not debug:  # their INFO lines are noise next to ours
        for noisy in ("asyncio", "parso", "uvicorn.access"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


# ---------------------------------------------------------------------------- version


def cmd_version(args: argparse.Namespace) -> int:
    print(f"blissng {blissng.__version__}")
    print(f"python {sys.version.split()[0]} ({sys.executable})")
    try:
        binary = find_redis_server()
        version = ".".join(map(str, redis_version(binary)))
        print(f"redis-server {version} ({binary})")
    except RedisError as exc:
        print(f"redis-server: {exc}")
    return 0


# ---------------------------------------------------------------------------- check


def cmd_check(args: argparse.Namespace) -> int:
    config = Config(_checked_config_dir(args.config))
    built = config.build_all()
    for error in config.errors:
        print(error)
    errors = len(config.errors)
    print(
        f"{len(built)} objects built, {errors} problem{'s' if errors != 1 else ''} "
        f"in {len(config.files)} files",
        file=sys.stderr,
    )
    return 1 if errors else 0


# ---------------------------------------------------------------------------- redis


def cmd_redis(args: argparse.Namespace) -> int:
    """Embedded servers in the foreground until SIGTERM/SIGINT, or until one of them dies."""
    state_dir = args.state_dir or default_state_dir("redis")
    stopping = {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}
    with _redis(state_dir, None) as stack:
        print(f"settings: {stack.urls.settings}")
        print(f"data: {stack.urls.data}")
        print(f"state: {state_dir}", flush=True)
        log.info("Redis ready; stop with Ctrl-C or SIGTERM")
        old = signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
        try:
            while True:
                received = signal.sigwait(stopping)
                if received != signal.SIGCHLD:
                    log.info("%s: stopping Redis", signal.Signals(received).name)
                    return 0
                dead = [p for p in stack.processes if p.process.poll() is not None]
                if dead:
                    raise CliError(
                        f"redis-server ({dead[0].role}) exited with code "
                        f"{dead[0].process.returncode}; see {dead[0].logfile}"
                    )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def _redis(state_dir: Path, url: str | None) -> Iterator[RedisStack]:
    started = time.perf_counter()
    stack = start_redis(state_dir, url=url)
    try:
        where = "embedded" if stack.embedded else f"external ({url})"
        log.debug("Redis %s in %.3f s", where, time.perf_counter() - started)
        yield stack
    finally:
        stack.stop()


# ---------------------------------------------------------------------------- serve, demo


def cmd_serve(args: argparse.Namespace) -> int:
    config_dir = _checked_config_dir(args.config)
    digest = hashlib.sha1(str(config_dir).encode()).hexdigest()[:8]
    state_dir = args.state_dir or default_state_dir(f"{config_dir.name}-{digest}")
    return _serve(args, config_dir, state_dir)


def cmd_demo(args: argparse.Namespace) -> int:
    """``serve`` on the configuration shipped in :mod:`blissng.demo`, with its simulators."""
    import blissng.sim.demo as demo

    state_dir = args.state_dir or default_state_dir("demo")
    args.default_session = "demo"
    simulators = functools.partial(demo.start_simulators, state_dir / "simulators")
    return _serve(args, demo.config_dir(), state_dir, simulators)


def _checked_config_dir(path: Path) -> Path:
    path = path.expanduser()
    if not path.exists():
        raise CliError(f"configuration directory {path} does not exist (--config DIR)")
    if not path.is_dir():
        raise CliError(f"--config {path} is not a directory")
    return path.resolve()


class _Stop(BaseException):
    """SIGTERM/SIGINT before the event loop listens for them: unwind, stopping Redis."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop(signum)


Extras = Callable[[], contextlib.AbstractAsyncContextManager[Any]]


def _serve(
    args: argparse.Namespace, config_dir: Path, state_dir: Path, extras: Extras | None = None
) -> int:
    interactive = sys.stdin.isatty() and sys.stdout.isatty() and not args.headless
    args.run_dir = state_dir  # the server's logs and connection file (web.json) go there
    stopping = (signal.SIGTERM, signal.SIGINT)
    previous = {signum: signal.signal(signum, _raise_stop) for signum in stopping}
    code = 0
    try:
        with _redis(state_dir, args.redis) as stack:
            code = anyio.run(run_main, args, stack, config_dir, interactive, extras)
    except _Stop as stop:
        log.info("%s during start-up: stopping", signal.Signals(stop.signum).name)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("stopped")
    return code


async def run_main(
    args: argparse.Namespace,
    stack: RedisStack,
    config_dir: Path,
    interactive: bool,
    extras: Extras | None = None,
) -> int:
    """The process's runtime, on the event loop; Redis is already running (``stack``).

    Enters ``extras`` (the demo's simulators), loads the configuration, connects its objects,
    logs ``ready``, then runs until SIGTERM/SIGINT (headless) or until the local shell exits
    (SIGTERM/SIGHUP also stop it). Returns the exit code: 1 if an embedded Redis server died.
    """
    started = time.perf_counter()
    stop = anyio.Event()  # set by the signals: shutdown runs uncancelled, in order
    async with anyio.create_task_group() as tg:
        if interactive:
            await tg.start(_on_signals, stop.set, (signal.SIGTERM, signal.SIGHUP))
        else:
            await tg.start(_on_signals, stop.set, (signal.SIGTERM, signal.SIGINT))
        failures: list[str] = []
        await tg.start(_watch_redis, stack, stop, failures)

        settings_client = async_client(stack.urls.settings)
        objects: dict[str, Any] = {}
        extras_up, release_extras, extras_down = anyio.Event(), anyio.Event(), anyio.Event()
        if extras is not None:  # started while the configuration loads (simulators are slow)
            tg.start_soon(_hold, extras, extras_up, release_extras, extras_down, started)
        else:
            extras_up.set()
            extras_down.set()
        try:
            async with contextlib.AsyncExitStack() as resources:
                resources.callback(release_extras.set)  # after the objects are closed
                resources.push_async_callback(close_objects, objects)
                with anyio.CancelScope() as starting:  # a stop during start-up aborts it
                    tg.start_soon(_cancel_when_set, stop, starting)
                    config = await Config.open(config_dir, settings=SettingsStore(settings_client))
                    objects.update(build_objects(config))
                    await extras_up.wait()
                    await connect_objects(objects)
                if starting.cancelled_caught:
                    log.info("start-up abandoned")
                else:
                    await _run_ready(args, stack, config, objects, config_dir, interactive, stop)
        finally:
            with anyio.CancelScope(shield=True):
                await settings_client.aclose()
        await extras_down.wait()  # the extras stop in their own time, not cancelled
        tg.cancel_scope.cancel()
    return 1 if failures else 0


async def _run_ready(
    args: argparse.Namespace,
    stack: RedisStack,
    config: Config,
    objects: dict[str, Any],
    config_dir: Path,
    interactive: bool,
    stop: anyio.Event,
) -> None:
    """Everything is up: start the server (sessions, background tasks, writer, web app and
    API: blissng.session.server), say so, then serve until ``stop`` (or the local shell
    exits); leaving the server stops them in order before the devices are closed."""
    from blissng.session.server import Server
    from blissng.web.api import web_runner

    server = Server(
        config,
        stack.urls,
        state_dir=args.run_dir,
        web=None if getattr(args, "no_web", False) else web_runner(args),
        default_session=getattr(args, "default_session", "main"),
    )
    async with server:
        # The local shell keeps its plain namespace until blissng.shell's local console
        # attaches to a session (``blissng shell SESSION`` does, through the web app).
        namespace: dict[str, Any] = {"config": config, "server": server, **objects}
        await _serve_ready(args, stack, objects, config_dir, interactive, stop, namespace)


async def _serve_ready(
    args: argparse.Namespace,
    stack: RedisStack,
    objects: dict[str, Any],
    config_dir: Path,
    interactive: bool,
    stop: anyio.Event,
    namespace: dict[str, Any],
) -> None:
    log.info(
        "ready in %.2f s: %d objects from %s; redis settings=%s data=%s",
        _since_process_start(),
        len(objects),
        config_dir,
        stack.urls.settings,
        stack.urls.data,
    )
    if interactive:
        # The web consoles route sys.stdin away from the process (blissng.shell.output); the
        # local prompt reads this terminal.
        if sys.__stdin__ is not None:
            sys.stdin = sys.__stdin__
        await run_local_shell(namespace, args, stop)
    else:
        await stop.wait()


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


async def connect_objects(objects: dict[str, Any], timeout: float = CONNECT_TIMEOUT) -> None:
    """``await obj.connect()`` for every object that has one, concurrently, each with a
    timeout; a failing device is logged and never prevents the others from connecting."""

    async def connect(name: str, obj: Any) -> None:
        try:
            with anyio.fail_after(timeout):
                await obj.connect()
        except TimeoutError:
            log.error("%s: connect() did not finish within %.1f s", name, timeout)
        except Exception as exc:
            log.error("%s: connect() failed: %s: %s", name, type(exc).__name__, exc)

    async with anyio.create_task_group() as tg:
        for name, obj in objects.items():
            if callable(getattr(obj, "connect", None)) and not isinstance(obj, type):
                tg.start_soon(connect, name, obj)


async def close_objects(objects: dict[str, Any], timeout: float = CONNECT_TIMEOUT) -> None:
    """``await obj.close()`` where there is one: shielded, concurrently, each with a timeout
    (so stopping takes at most ``timeout`` whatever the devices do)."""

    async def close(name: str, method: Callable[[], Any]) -> None:
        try:
            with anyio.fail_after(timeout):
                result = method()
                if hasattr(result, "__await__"):
                    await result
        except TimeoutError:
            log.error("%s: close() did not finish within %.1f s", name, timeout)
        except Exception as exc:
            log.error("%s: close() failed: %s: %s", name, type(exc).__name__, exc)

    with anyio.CancelScope(shield=True):
        async with anyio.create_task_group() as tg:
            for name, obj in objects.items():
                method = getattr(obj, "close", None)
                if callable(method) and not isinstance(obj, type):
                    tg.start_soon(close, name, method)


async def _on_signals(
    stop: Callable[[], object],
    signals: Sequence[signal.Signals],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    with anyio.open_signal_receiver(*signals) as received:
        task_status.started()
        async for signum in received:
            log.info("%s: stopping", signal.Signals(signum).name)
            stop()
            return


async def _watch_redis(
    stack: RedisStack,
    stop: anyio.Event,
    failures: list[str],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """An embedded server that dies stops everything with an error, rather than leaving every
    Redis call to fail on its own. Checked at each SIGCHLD (any child's exit)."""
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
                        f"{proc.process.returncode}; see {proc.logfile}; stopping"
                    )
                    log.error("%s", failure)
                    failures.append(failure)
                    stop.set()
                    return


async def run_local_shell(
    namespace: dict[str, Any], args: argparse.Namespace, stop: anyio.Event
) -> None:
    """A ptpython prompt on this terminal with the configuration's objects; ``await`` works.

    Ends with Ctrl-D, or when ``stop`` is set (SIGTERM): then a running command is cancelled
    and the prompt is asked to exit (not cancelled: ptpython's loop swallows cancellation
    while it reads input, and would retry forever).

    Ctrl-C (SIGINT) during a command cancels it: ptpython installs that handler around each
    command, and removes it afterwards; between commands, a SIGINT only logs (it must not
    stop the process). Until blissng.shell's local console takes over (with sessions), this
    is the plain ptpython REPL on the event loop (asyncio).
    """
    import asyncio

    from ptpython.repl import PythonRepl, embed

    history = default_state_dir("history")
    await anyio.to_thread.run_sync(lambda: history.mkdir(parents=True, exist_ok=True))
    repls: list[PythonRepl] = []
    shell = embed(
        globals=namespace,
        locals=namespace,
        configure=repls.append,
        history_filename=str(history / f"{args.command}.history"),
        title=f"blissng {args.command}",
        patch_stdout=True,
        return_asyncio_coroutine=True,
    )
    assert shell is not None
    (repl,) = repls
    loop = asyncio.get_running_loop()

    def idle_sigint() -> None:
        log.info("Ctrl-C: no command is running (Ctrl-D leaves the shell)")

    run_command = repl.run_and_show_expression_async
    running: set[anyio.CancelScope] = set()  # the command being run, cancelled on stop

    async def run_and_show(text: str) -> Any:
        try:
            with anyio.CancelScope() as scope:
                if stop.is_set():
                    scope.cancel()
                running.add(scope)
                try:
                    return await run_command(text)
                finally:
                    running.discard(scope)
        finally:  # ptpython removed its SIGINT handler: SIGINT between commands only logs
            loop.add_signal_handler(signal.SIGINT, idle_sigint)

    repl.run_and_show_expression_async = run_and_show  # type: ignore[method-assign]
    loop.add_signal_handler(signal.SIGINT, idle_sigint)

    async def exit_on_stop() -> None:
        await stop.wait()

        def read() -> str:  # no new prompt once stopping
            raise EOFError

        repl.read = read  # type: ignore[method-assign]
        for scope in running:  # a running command is aborted (its cleanup still runs)
            scope.cancel()
        while True:  # the prompt runs in its own thread and loop: ask it there
            app = repl.app
            if app.is_running and app.loop is not None:
                app.loop.call_soon_threadsafe(_exit_app, app)
            await anyio.sleep(0.2)  # again, in case the prompt was just starting

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(exit_on_stop)
            with anyio.CancelScope(shield=True):
                await shell
            tg.cancel_scope.cancel()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, _raise_stop)  # while stopping, as while starting


def _exit_app(app: Any) -> None:
    if app.is_running and not app.future.done():
        app.exit(exception=EOFError())
