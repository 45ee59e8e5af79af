"""A simulated Tango device server in a process of its own, without a Tango database.

The process :class:`TangoSimServer` runs (``python -m blissng.sim._tango_server --port PORT``)
serves, on 127.0.0.1 only:

============================  ============================================================
``sim/motor/1``               :class:`~blissng.sim._tango_devices.SimTangoMotor`
``sim/motor/2``               another motor (starts at 0, 5 mm/s)
``sim/counter/1``             :class:`~blissng.sim._tango_devices.SimTangoCounter`, its
                              ``Counts`` peaking at ``sim/motor/1`` = 1.0
============================  ============================================================

through pytango's test context (``MultiDeviceTestContext``, the ``nodb`` device names). A
client reaches them by their full names, e.g.
``tango://127.0.0.1:PORT/sim/motor/1#dbase=no`` (:meth:`TangoSimServer.trl`).

:class:`TangoSimServer` starts the process, stops it, kills it (as a crash would) and
restarts it on the same port, so that clients see the same device come back. The pytest
plugin's ``tango_sim`` fixture runs one for the whole test session (docs/control-systems.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio

from blissng.sim._process import ServerProcess, free_port
from blissng.threads import run_in_thread

MOTORS = {"sim/motor/1": {}, "sim/motor/2": {"initial_velocity": 5.0, "initial_acceleration": 50.0}}
COUNTERS = {"sim/counter/1": {"motor": "sim/motor/1", "center": 1.0, "sigma": 0.5}}


def device_name(trl: str) -> str:
    """``sim/motor/1`` from a full name ``tango://host:port/sim/motor/1#dbase=no``."""
    name = trl.split("#", 1)[0]
    if name.startswith("tango://"):
        name = name[len("tango://") :].split("/", 1)[1]
    return name


class TangoSimServer(ServerProcess):
    """The simulated Tango device server process (start, stop, kill, restart on its port)."""

    module = "blissng.sim._tango_server"
    what = "Tango device server"
    log_name = "tango_server.log"

    def __init__(self, directory: Path, port: int | None = None) -> None:
        super().__init__(directory)
        self.port = port or free_port()

    def arguments(self) -> list[str]:
        return ["--port", str(self.port)]

    @property
    def devices(self) -> list[str]:
        return list(self.info.get("devices", []))

    def trl(self, name: str) -> str:
        """The full Tango name of a device of this server (no database needed)."""
        return f"tango://127.0.0.1:{self.port}/{name}#dbase=no"

    @property
    def names(self) -> dict[str, str]:
        """``{"sim/motor/1": "tango://127.0.0.1:PORT/sim/motor/1#dbase=no", ...}``."""
        return {name: self.trl(name) for name in self.devices}

    @property
    def tango_host(self) -> str:
        """What ``sim://tango`` resolves to: this server's host:port, without a database."""
        return f"127.0.0.1:{self.port}#dbase=no"

    def reset(self) -> None:
        """Every device back to its start-up state (``Reset`` commands), the server restarted
        first if it is not running. Needs pytango (a client of the server)."""
        if not self.alive:
            self.restart()
        import tango

        for name in (*MOTORS, *COUNTERS):
            proxy = tango.DeviceProxy(self.trl(name))
            proxy.set_timeout_millis(10000)
            proxy.command_inout("Reset")

    def __repr__(self) -> str:
        return f"<TangoSimServer 127.0.0.1:{self.port} pid={self.pid}>"


@contextlib.contextmanager
def run_tango_sim(directory: Path, port: int | None = None) -> Iterator[TangoSimServer]:
    """The simulated Tango server for the duration of the block."""
    server = TangoSimServer(directory, port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def open_tango_sim(directory: Path, port: int | None = None) -> AsyncIterator[TangoSimServer]:
    """Async twin of :func:`run_tango_sim` (start and stop run in a worker thread)."""
    server = TangoSimServer(directory, port)
    await run_in_thread(server.start)
    try:
        yield server
    finally:
        with anyio.CancelScope(shield=True):
            await run_in_thread(server.stop)


# ------------------------------------------------------------------------------ the process


def _devices_info() -> list[dict[str, Any]]:
    from blissng.sim._tango_devices import SimTangoCounter, SimTangoMotor

    return [
        {
            "class": SimTangoMotor,
            "devices": [{"name": n, "properties": p} for n, p in MOTORS.items()],
        },
        {
            "class": SimTangoCounter,
            "devices": [{"name": n, "properties": p} for n, p in COUNTERS.items()],
        },
    ]


def _wait_for_parent_or_signal() -> None:
    """Block until SIGTERM/SIGINT or until stdin closes (the parent is gone)."""
    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_stdin() -> None:
        while os.read(sys.stdin.fileno(), 4096):
            pass
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    while not done.wait(0.5):
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m blissng.sim._tango_server", description=__doc__
    )
    parser.add_argument("--port", type=int, required=True, help="the server's port (127.0.0.1)")
    options = parser.parse_args(argv)
    from tango.test_context import MultiDeviceTestContext

    from blissng.sim._process import announce_ready

    context = MultiDeviceTestContext(
        _devices_info(),
        server_name="BlissngSim",
        instance_name="sim",
        host="127.0.0.1",
        port=options.port,
        process=False,
        daemon=True,
        timeout=60,
    )
    context.start()
    try:
        names = [*MOTORS, *COUNTERS]
        announce_ready({"pid": os.getpid(), "port": options.port, "devices": names})
        _wait_for_parent_or_signal()
    finally:
        context.stop()


if __name__ == "__main__":
    main()


__all__ = ["COUNTERS", "MOTORS", "TangoSimServer", "device_name", "open_tango_sim", "run_tango_sim"]
