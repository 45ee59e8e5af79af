"""The ``blissng`` command: ``version``, ``check``, ``redis``, ``serve`` and ``demo``.

This module parses the arguments and dispatches; what ``serve`` and ``demo`` run (Redis, the
configuration's objects, the server, signals, this terminal's console) is
:mod:`blissng.runtime`. Other commands (``shell``, ``writer``, ``worker``) are delegated to
the modules that implement them.

Errors print as one line (``blissng: error: ...``) with exit code 1; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import blissng
from blissng import runtime
from blissng.config import Config, ConfigError
from blissng.errors import sole_exception
from blissng.redisdb import RedisUnavailable, default_state_dir, find_redis_server, redis_version
from blissng.runtime import CliError, RunOptions, running_redis, serve

log = logging.getLogger("blissng")


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
        from blissng.web import shell_main

        return shell_main
    if command == "writer":
        from blissng.writer.__main__ import main as writer_main

        return writer_main
    if command == "worker":
        from blissng.workflows import worker_main

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
        help="no console on this terminal: run until SIGTERM/SIGINT (the default when "
        "standard input or output is not a terminal)",
    )
    parser.add_argument(
        "--session",
        metavar="NAME",
        help="the session of the console on this terminal (default: the first one)",
    )
    from blissng.web import add_web_options

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
    exc = sole_exception(exc)  # a task group's single failure: say what it was
    if isinstance(exc, CliError | ConfigError | RedisUnavailable):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc} (run with --debug for the traceback)"
    return " ".join(text.split())


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (or to the console shown on this
    terminal), so that log lines print above the prompt instead of across it."""

    @property
    def stream(self) -> Any:
        return runtime.console_log if runtime.console_log is not None else sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class _Formatter(logging.Formatter):
    """Our format, except for the lines a supervised child printed (formatted already)."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "relayed", False):
            return record.getMessage()
        return super().format(record)


def _setup_logging(debug: bool) -> None:
    handler = _StderrHandler()
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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
    except RedisUnavailable as exc:
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
    """Embedded servers in the foreground until SIGTERM/SIGINT, or until one of them dies.

    The signals are blocked only once the servers run (children inherit a blocked mask, and
    a Redis that cannot see SIGTERM would not stop); a SIGCHLD that came before is not lost
    for that: the children are polled twice a second as well."""
    state_dir = args.state_dir or default_state_dir("redis")
    stopping = {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}
    with running_redis(state_dir, None) as stack:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
        try:
            print(f"settings: {stack.urls.settings}")
            print(f"data: {stack.urls.data}")
            print(f"state: {state_dir}", flush=True)
            log.info("Redis ready; stop with Ctrl-C or SIGTERM")
            while True:
                received = signal.sigtimedwait(stopping, 0.5)
                if received is not None and received.si_signo != signal.SIGCHLD:
                    log.info("%s: stopping Redis", signal.Signals(received.si_signo).name)
                    return 0
                dead = [p for p in stack.processes if p.process.poll() is not None]
                if dead:
                    raise CliError(
                        f"redis-server ({dead[0].role}) exited with code "
                        f"{dead[0].process.returncode}; see {dead[0].logfile}"
                    )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


# ---------------------------------------------------------------------------- serve, demo


def cmd_serve(args: argparse.Namespace) -> int:
    config_dir = _checked_config_dir(args.config)
    digest = hashlib.sha1(str(config_dir).encode()).hexdigest()[:8]
    state_dir = args.state_dir or default_state_dir(f"{config_dir.name}-{digest}")
    return serve(_run_options(args, config_dir, state_dir))


def cmd_demo(args: argparse.Namespace) -> int:
    """``serve`` on the configuration shipped in :mod:`blissng.demo`, with its simulators."""
    from blissng.sim import demo_config_dir, start_simulators

    state_dir = args.state_dir or default_state_dir("demo")
    simulators = functools.partial(start_simulators, state_dir / "simulators")
    options = _run_options(args, demo_config_dir(), state_dir, default_session="demo")
    return serve(options, simulators)


def _run_options(
    args: argparse.Namespace, config_dir: Path, state_dir: Path, default_session: str = "main"
) -> RunOptions:
    """What ``serve`` and ``demo`` run, from the options :func:`_runtime_options` added."""
    from blissng.web import WebOptions

    return RunOptions(
        config_dir=config_dir,
        state_dir=state_dir,
        redis_url=args.redis,
        headless=args.headless,
        console_session=args.session,
        default_session=default_session,
        web=None if args.no_web else WebOptions.from_args(args),
    )


def _checked_config_dir(path: Path) -> Path:
    path = path.expanduser()
    if not path.exists():
        raise CliError(f"configuration directory {path} does not exist (--config DIR)")
    if not path.is_dir():
        raise CliError(f"--config {path} is not a directory")
    return path.resolve()
