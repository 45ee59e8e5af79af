"""Start sim hosts as processes and talk to their control sockets.

``start_sim_host(spec)`` (a context manager, for fixtures and scripts) and ``open_sim_host``
(its async twin) start ``python -m blissng.sim.servers`` and return a :class:`SimHost`: the
addresses of its simulators and the control operations (faults, reset, stats), async and
``*_sync``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio

from blissng.errors import BlissngError
from blissng.sim._process import spawn_ready, stop_process
from blissng.sim.servers._host import CONTROL_SOCKET
from blissng.sim.servers._spec import HostSpec
from blissng.threads import run_in_thread


class SimControlError(BlissngError, RuntimeError):
    """A control operation failed in the sim host (the message says why)."""


@dataclasses.dataclass(frozen=True)
class SimInfo:
    """Where one simulator listens."""

    name: str
    kind: str
    url: str
    path: str | None = None  # pty symlink or unix socket
    host: str | None = None
    port: int | None = None


class SimHost:
    """A running sim host process: addresses and control operations."""

    def __init__(self, spec: HostSpec, process: subprocess.Popen[bytes], info: dict[str, Any]):
        self.spec = spec
        self.process = process
        self.pid: int = info["pid"]
        self.directory = Path(info["directory"])
        self.control_path = info["control"]
        self.sims = {name: SimInfo(**sim) for name, sim in info["simulators"].items()}

    def __getitem__(self, name: str) -> SimInfo:
        try:
            return self.sims[name]
        except KeyError:
            raise KeyError(
                f"no simulator {name!r} in this host; it has {sorted(self.sims)}"
            ) from None

    def url(self, name: str) -> str:
        return self[name].url

    @property
    def urls(self) -> dict[str, str]:
        return {name: sim.url for name, sim in self.sims.items()}

    # -- control: async ------------------------------------------------------------------------

    async def call(self, sim: str | None, op: str, **args: Any) -> Any:
        """Run a control op of a simulator (``sim=None``: of the host). Raises SimControlError."""
        request = json.dumps({"sim": sim, "op": op, "args": args}).encode() + b"\n"
        with anyio.fail_after(10):
            async with await anyio.connect_unix(self.control_path) as stream:
                await stream.send(request)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = await stream.receive()
                    data += chunk
        return self._result(data, sim, op)

    async def fault(self, sim: str, mode: str, *, delay: float | None = None) -> Any:
        """``mode``: none, silent, garbage, slow (``delay`` s), or disconnect (one-shot)."""
        return await self.call(sim, "fault", mode=mode, delay=delay)

    async def disconnect(self, sim: str) -> Any:
        return await self.call(sim, "disconnect")

    async def reset(self, sim: str | None = None) -> None:
        """Every simulator (or one) back to its spec: state, faults, client connections."""
        await self.call(sim, "reset")

    async def stats(self, sim: str) -> dict[str, Any]:
        return await self.call(sim, "stats")

    # -- control: sync -------------------------------------------------------------------------

    def call_sync(self, sim: str | None, op: str, **args: Any) -> Any:
        request = json.dumps({"sim": sim, "op": op, "args": args}).encode() + b"\n"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(self.control_path)
            sock.sendall(request)
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        return self._result(data, sim, op)

    def fault_sync(self, sim: str, mode: str, *, delay: float | None = None) -> Any:
        return self.call_sync(sim, "fault", mode=mode, delay=delay)

    def reset_sync(self, sim: str | None = None) -> None:
        self.call_sync(sim, "reset")

    def stats_sync(self, sim: str) -> dict[str, Any]:
        return self.call_sync(sim, "stats")

    def _result(self, data: bytes, sim: str | None, op: str) -> Any:
        if not data:
            raise SimControlError(f"sim host {self.pid}: no answer to {op} on {sim}")
        reply = json.loads(data)
        if not reply["ok"]:
            raise SimControlError(reply["error"])
        return reply["result"]

    # -- life cycle ----------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        stop_process(self.process, timeout)

    def __repr__(self) -> str:
        return f"<SimHost pid={self.pid} {sorted(self.sims)}>"


def _launch(spec: HostSpec, startup_timeout: float) -> SimHost:
    directory = spec.directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    spec = spec.model_copy(update={"directory": directory})
    process, info = spawn_ready(
        "blissng.sim.servers",
        ["--spec", spec.model_dump_json()],
        directory / "host.log",
        startup_timeout=startup_timeout,
        what="sim host",
    )
    return SimHost(spec, process, info)


@contextlib.contextmanager
def start_sim_host(spec: HostSpec, *, startup_timeout: float = 30.0) -> Iterator[SimHost]:
    """Run a sim host process for the duration of the ``with`` block."""
    host = _launch(spec, startup_timeout)
    try:
        yield host
    finally:
        host.stop()


@contextlib.asynccontextmanager
async def open_sim_host(spec: HostSpec, *, startup_timeout: float = 30.0) -> AsyncIterator[SimHost]:
    """Async twin of :func:`start_sim_host` (process start and stop run in a thread)."""
    host = await run_in_thread(_launch, spec, startup_timeout)
    try:
        yield host
    finally:
        with anyio.CancelScope(shield=True):
            await run_in_thread(host.stop)


__all__ = [
    "CONTROL_SOCKET",
    "SimControlError",
    "SimHost",
    "SimInfo",
    "open_sim_host",
    "start_sim_host",
]
