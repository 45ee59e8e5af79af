"""Simulator processes that announce themselves: start ``python -m ...``, wait for its
``READY {json}`` line on stdout, stop it (SIGTERM, then SIGKILL).

Every simulated server (the sim hosts, the Tango device server, the EPICS IOC) runs in a
process of its own and prints one ``READY`` line once it listens; its stdin stays open as a
lifeline: a server exits when its stdin closes (its parent is gone). Its stderr goes to a log
file that start-up errors quote.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import blissng


def _environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    source = str(Path(blissng.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def spawn_ready(
    module: str,
    args: Sequence[str],
    log_path: Path,
    *,
    startup_timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
    what: str = "simulator",
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Run ``python -m module *args``; return the process and the JSON of its READY line.

    Raises ``RuntimeError`` quoting the end of the log if the process exits or stays silent
    for ``startup_timeout`` seconds.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=_environment(env),
        )
    assert process.stdout is not None
    deadline = time.monotonic() + startup_timeout
    data = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            # Libraries may print lines of their own first ("Ready to accept request").
            line, found, rest = data.partition(b"\n")
            if found and line.startswith(b"READY "):
                break
            if found:
                data = rest
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                process.kill()
                process.wait()
                raise RuntimeError(
                    f"{what} did not start within {startup_timeout} s; log {log_path}:\n"
                    + log_path.read_text(errors="replace")[-2000:]
                )
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                process.wait()
                raise RuntimeError(
                    f"{what} exited ({process.returncode}) before it was ready; "
                    f"log {log_path}:\n" + log_path.read_text(errors="replace")[-2000:]
                )
            data += chunk
    return process, json.loads(line[len(b"READY ") :])


def stop_process(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; close our ends of its pipes."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()


def kill_process(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL, as a crash would: no clean-up in the server."""
    if process.poll() is None:
        process.kill()
        process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()


def announce_ready(info: Mapping[str, Any]) -> None:
    """In the server process: print the READY line its parent waits for."""
    sys.stdout.write("READY " + json.dumps(info) + "\n")
    sys.stdout.flush()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP on ``host`` right now (servers bind it next)."""
    import socket

    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError(f"no port free for both TCP and UDP on {host}")


class ServerProcess:
    """A simulated server in its own process, restartable on the same ports: subclasses say
    which module runs it (``module``, ``what``) and with which arguments (``arguments``)."""

    module = ""
    what = "simulator"
    log_name = "server.log"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.process: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    def arguments(self) -> list[str]:
        return []

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self, startup_timeout: float = 60.0) -> None:
        if self.alive:
            return
        self.process, self.info = spawn_ready(
            self.module,
            self.arguments(),
            self.directory / self.log_name,
            startup_timeout=startup_timeout,
            what=self.what,
        )

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def kill(self) -> None:
        """SIGKILL the server: a crash, for tests of what clients do then."""
        if self.process is not None:
            kill_process(self.process)

    def restart(self, startup_timeout: float = 60.0) -> None:
        """Start again on the same ports (after :meth:`kill` or :meth:`stop`)."""
        self.stop()
        self.start(startup_timeout)


__all__ = [
    "ServerProcess",
    "announce_ready",
    "free_port",
    "kill_process",
    "spawn_ready",
    "stop_process",
]
