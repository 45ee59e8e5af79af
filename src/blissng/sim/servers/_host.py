"""The sim host: one process, one event loop, several simulators sharing state, and a control
socket (JSON lines) through which tests and the demo inject faults and reset state.

Run as ``python -m blissng.sim.servers --spec SPEC``; prints ``READY {json}`` once every
simulator listens; stops on SIGTERM/SIGINT or when its stdin closes (the parent is gone).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import ByteStream
from anyio.streams.buffered import BufferedByteReceiveStream

from blissng.sim.servers._bad_device import BadDeviceSim
from blissng.sim.servers._base import Simulator
from blissng.sim.servers._camera import CameraSim
from blissng.sim.servers._good_device import GoodDeviceSim
from blissng.sim.servers._mca import McaSim
from blissng.sim.servers._motor_controller import MotorControllerSim
from blissng.sim.servers._scaler import ScalerSim
from blissng.sim.servers._spec import HostSpec
from blissng.sim.servers._trigger_box import TriggerBoxSim

log = logging.getLogger("blissng.sim.servers")

KINDS: dict[str, type[Simulator]] = {
    "motor_controller": MotorControllerSim,
    "scaler": ScalerSim,
    "mca": McaSim,
    "camera": CameraSim,
    "trigger_box": TriggerBoxSim,
    "good_device": GoodDeviceSim,
    "bad_device": BadDeviceSim,
}

CONTROL_SOCKET = "control.sock"


class SimHostServer:
    def __init__(self, spec: HostSpec) -> None:
        self.spec = spec
        self.directory = spec.directory.resolve()
        self.simulators: dict[str, Simulator] = {
            name: KINDS[sim.kind](name, sim, self) for name, sim in spec.simulators.items()
        }

    def simulator_named(self, name: str) -> Any:
        """Another simulator of this host (None if absent): shared state between simulators."""
        return self.simulators.get(name)

    def info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "directory": str(self.directory),
            "control": str(self.directory / CONTROL_SOCKET),
            "simulators": {name: sim.info() for name, sim in self.simulators.items()},
        }

    async def run(self, ready: Callable[[dict[str, Any]], None], watch_stdin: bool = True) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        control = self.directory / CONTROL_SOCKET
        if control.exists() or control.is_symlink():
            control.unlink()
        async with anyio.create_task_group() as tg:
            for sim in self.simulators.values():
                await tg.start(sim.serve)
            listener = await anyio.create_unix_listener(control)
            tg.start_soon(listener.serve, self._control_client)
            tg.start_soon(self._watch_signals, tg.cancel_scope)
            if watch_stdin:
                tg.start_soon(self._watch_stdin, tg.cancel_scope)
            ready(self.info())
        self._cleanup()

    def _cleanup(self) -> None:
        for sim in self.simulators.values():
            if sim.path and (os.path.islink(sim.path) or os.path.exists(sim.path)):
                os.unlink(sim.path)
        control = self.directory / CONTROL_SOCKET
        if control.exists():
            control.unlink()

    async def _watch_signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                scope.cancel()
                return

    async def _watch_stdin(self, scope: anyio.CancelScope) -> None:
        fd = sys.stdin.fileno()
        os.set_blocking(fd, False)
        while True:
            await anyio.wait_readable(fd)
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                continue
            if not data:
                scope.cancel()
                return

    async def _control_client(self, stream: ByteStream) -> None:
        async with stream:
            reader = BufferedByteReceiveStream(stream)
            while True:
                try:
                    line = await reader.receive_until(b"\n", 1 << 20)
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                    return
                try:
                    result = await self._dispatch(json.loads(line))
                    reply: dict[str, Any] = {"ok": True, "result": result}
                except Exception as exc:  # every error goes back to the caller, named
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                await stream.send(json.dumps(reply).encode() + b"\n")

    async def _dispatch(self, request: dict[str, Any]) -> Any:
        sim: Simulator | None
        name = request.get("sim")
        op = request.get("op")
        args = request.get("args") or {}
        if name is None:
            if op == "reset":
                for sim in self.simulators.values():
                    await sim.control_reset()
                return None
            if op == "list":
                return self.info()
            if op == "ping":
                return "pong"
            raise ValueError(f"unknown host op {op!r}; use reset, list or ping")
        sim = self.simulators.get(name)
        if sim is None:
            raise KeyError(f"no simulator {name!r} in this host; it has {sorted(self.simulators)}")
        method = getattr(sim, f"control_{op}", None)
        if method is None:
            ops = sorted(a[len("control_") :] for a in dir(sim) if a.startswith("control_"))
            raise ValueError(f"{name}: unknown op {op!r}; ops are {ops}")
        result = method(**args)
        if inspect.isawaitable(result):
            result = await result
        return result
