"""A simulated "good device": acquires on a wall-clock schedule into a large buffer and hands
over many points per request (point k has the value k, so readers can check integrity)."""

from __future__ import annotations

from typing import Any

import numpy as np

from blissng.sim.servers._base import (
    Client,
    SimError,
    Simulator,
    arg_float,
    arg_int,
    expect_args,
    now,
)
from blissng.sim.servers._spec import GoodDeviceSpec


class GoodDeviceSim(Simulator):
    kind = "good_device"

    def __init__(self, name: str, spec: GoodDeviceSpec, host: Any) -> None:
        super().__init__(name, spec, host)
        self.points_read = 0
        self.commands = {
            "*IDN?": lambda a, c: "SIMGOOD 1.0",
            "START": self.c_start,
            "STOP": self.c_stop,
            "?NPT": lambda a, c: str(self._available(c)),
            "?OVR": self.q_ovr,
            "READ": self.c_read,
        }

    def _available(self, client: Client) -> int:
        state = client.state
        if "t0" not in state:
            return 0
        end = state.get("stopped_at") or now()
        produced = int((end - state["t0"]) * state["rate"])
        waiting = produced - state["next"]
        if waiting > self.spec.capacity:
            lost = waiting - self.spec.capacity
            state["overrun"] = state.get("overrun", 0) + lost
            state["next"] += lost
            waiting = self.spec.capacity
        return waiting

    def q_ovr(self, args: list[str], client: Client) -> str:
        self._available(client)  # accounts for what overflowed up to now
        return str(client.state.get("overrun", 0))

    def c_start(self, args: list[str], client: Client) -> str:
        expect_args(args, 1)
        rate = arg_float(args, 0, "rate")
        if rate <= 0:
            raise SimError(8, "rate must be > 0")
        client.state.clear()
        client.state.update(t0=now(), rate=rate, next=0, overrun=0)
        return "OK"

    def c_stop(self, args: list[str], client: Client) -> str:
        if "t0" in client.state:
            client.state["stopped_at"] = now()
        return "OK"

    def c_read(self, args: list[str], client: Client) -> bytes:
        expect_args(args, 1)
        limit = arg_int(args, 0, "max")
        if limit < 0:
            raise SimError(8, "max must be >= 0")
        n = min(limit, self._available(client))
        first = client.state.get("next", 0)
        values = np.arange(first, first + n, dtype="<f8")
        if n:
            client.state["next"] = first + n
        self.points_read += n
        return f"DATA {n} f8\n".encode("ascii") + values.tobytes()

    def stats(self) -> dict[str, Any]:
        return {"points_read": self.points_read}

    def reset(self) -> None:
        self.points_read = 0
