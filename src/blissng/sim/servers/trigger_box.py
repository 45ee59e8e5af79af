"""A simulated trigger box: emits N pulses with a period to its outputs, the detector
simulators of the same host, which receive each pulse as an in-process call at its time."""

from __future__ import annotations

import time
from typing import Any

import anyio

from blissng.sim.servers.base import Client, SimError, Simulator, arg_float, arg_int, expect_args
from blissng.sim.servers.spec import TriggerBoxSpec


class TriggerBoxSim(Simulator):
    kind = "trigger_box"

    def __init__(self, name: str, spec: TriggerBoxSpec, host: Any) -> None:
        super().__init__(name, spec, host)
        self.outputs: dict[str, bool] = {}
        self.npulses = 0
        self.period = 0.0
        self.width = 0.0
        self.count = 0
        self.status = "IDLE"
        self._scope: anyio.CancelScope | None = None
        self.reset()
        self.commands = {
            "*IDN?": lambda a, c: "SIMTRIG 1.0",
            "?OUT": lambda a, c: " ".join(
                f"{n}:{'ON' if on else 'OFF'}" for n, on in self.outputs.items()
            ),
            "OUT": self.c_out,
            "PULSES": self.c_pulses,
            "START": self.c_start,
            "STOP": self.c_stop,
            "?STA": lambda a, c: self.status,
            "?CNT": lambda a, c: str(self.count),
        }

    def reset(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None
        self.outputs = {name: True for name in self.spec.outputs}
        self.npulses, self.period, self.width, self.count = 0, 0.0, 0.0, 0
        self.status = "IDLE"

    def c_out(self, args: list[str], client: Client) -> str:
        expect_args(args, 2)
        if args[0] not in self.outputs:
            raise SimError(3, f"unknown output {args[0]!r}; outputs are {' '.join(self.outputs)}")
        value = args[1].upper()
        if value not in ("ON", "OFF"):
            raise SimError(2, f"expected ON or OFF, got {args[1]!r}")
        self.outputs[args[0]] = value == "ON"
        return "OK"

    def c_pulses(self, args: list[str], client: Client) -> str:
        expect_args(args, 3)
        if self.status != "IDLE":
            raise SimError(10, "cannot change the pulses while RUNNING")
        n = arg_int(args, 0, "number of pulses")
        period = arg_float(args, 1, "period")
        width = arg_float(args, 2, "width")
        if n < 1 or period <= 0 or not 0 < width < period:
            raise SimError(8, "need n >= 1, period > 0 and 0 < width < period")
        self.npulses, self.period, self.width = n, period, width
        return "OK"

    def c_start(self, args: list[str], client: Client) -> str:
        if self.npulses < 1:
            raise SimError(10, "START before PULSES")
        if self.status != "IDLE":
            raise SimError(10, "already RUNNING")
        self.count = 0
        self.status = "RUNNING"
        scope = anyio.CancelScope()
        self._scope = scope
        self.task_group.start_soon(self._run, scope)
        return "OK"

    def c_stop(self, args: list[str], client: Client) -> str:
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None
        self.status = "IDLE"
        return "OK"

    async def _run(self, scope: anyio.CancelScope) -> None:
        with scope:
            t0 = time.monotonic()
            for k in range(self.npulses):
                t = t0 + k * self.period
                await anyio.sleep(max(t - time.monotonic(), 0.0))
                self.count += 1
                for name, on in self.outputs.items():
                    target = self.host.simulator_named(name) if on else None
                    if target is not None:
                        target.on_pulse(k, t, self.width)
            await anyio.sleep(
                max(t0 + (self.npulses - 1) * self.period + self.width - time.monotonic(), 0.0)
            )
            self.status = "IDLE"
            self._scope = None

    def stats(self) -> dict[str, Any]:
        return {"status": self.status, "count": self.count, "outputs": dict(self.outputs)}
