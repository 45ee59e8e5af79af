"""The acquisition state machine shared by the triggered detectors (scaler, MCA, camera):
``PREP n time INT|SOFT|EXT``, ``START``, ``TRIG``, external pulses, ``STOP``, ``?STA``,
``?NPT``, ``?MISS``, ``READ max``. One task per acquisition completes the points in order, so a
device reports ``IDLE`` only once every point is readable."""

from __future__ import annotations

import collections
import time
from typing import Any

import anyio

from blissng.sim.servers.base import (
    Client,
    SimError,
    Simulator,
    arg_float,
    arg_int,
    expect_args,
    now,
)

MODES = ("INT", "SOFT", "EXT")


class TriggeredDetector(Simulator):
    """Subclasses implement ``acquire_point(t0, t1)`` (store one point) and ``format_read``."""

    def __init__(self, name: str, spec: Any, host: Any) -> None:
        super().__init__(name, spec, host)
        self.mode: str | None = None
        self.npoints = 0
        self.time = 0.0
        self.status = "IDLE"
        self.acquired = 0
        self.read_index = 0
        self.missed = 0
        self.points: list[Any] = []
        self._scope: anyio.CancelScope | None = None
        # Triggers taken on the device's own timeline (this process may be late to act on
        # them on a busy machine, the simulated device is not): their times, in order.
        self._triggers: collections.deque[float] = collections.deque()
        self._taken = 0  # triggers accepted since START
        self._busy_until = 0.0  # nominal end of the last accepted trigger's point
        self._trigger = anyio.Event()
        self.commands.update(
            {
                "PREP": self.c_prep,
                "START": self.c_start,
                "TRIG": self.c_trig,
                "STOP": self.c_stop,
                "?STA": lambda a, c: self.status,
                "?NPT": lambda a, c: str(self.acquired),
                "?MISS": lambda a, c: str(self.missed),
                "READ": self.c_read,
            }
        )

    # -- subclass hooks ----------------------------------------------------------------------

    async def acquire_point(self, t0: float, t1: float) -> None:
        raise NotImplementedError

    def format_read(self, points: list[Any]) -> str | bytes:
        raise NotImplementedError

    async def acquisition_started(self) -> None:
        """Called by START before the first point (the camera opens its file)."""

    async def acquisition_ended(self) -> None:
        """Called after the last point or on STOP (the camera closes its file)."""

    # -- commands ----------------------------------------------------------------------------

    def c_prep(self, args: list[str], client: Client) -> str:
        expect_args(args, 3)
        if self.status != "IDLE":
            raise SimError(10, f"cannot PREP while {self.status}; STOP first")
        npoints = arg_int(args, 0, "npoints")
        duration = arg_float(args, 1, "time")
        mode = args[2].upper()
        if npoints < 0 or duration <= 0:
            raise SimError(8, "npoints must be >= 0 and time > 0")
        if mode not in MODES:
            raise SimError(2, f"mode must be one of {' '.join(MODES)}, got {args[2]!r}")
        self.npoints, self.time, self.mode = npoints, duration, mode
        return "OK"

    async def c_start(self, args: list[str], client: Client) -> str:
        expect_args(args, 0)
        if self.mode is None:
            raise SimError(10, "START before PREP")
        if self.status != "IDLE":
            raise SimError(10, f"cannot START while {self.status}")
        self.acquired = self.read_index = self.missed = 0
        self.points = []
        self._triggers.clear()
        self._taken = 0
        self._busy_until = 0.0
        self._trigger = anyio.Event()
        await self.acquisition_started()
        self.status = "BUSY" if self.mode == "INT" else "ARMED"
        scope = anyio.CancelScope()
        self._scope = scope
        self.task_group.start_soon(self._run, scope)
        return "OK"

    def c_trig(self, args: list[str], client: Client) -> str:
        t = now()
        if self.mode != "SOFT" or not self._ready_at(t):
            raise SimError(
                10, f"TRIG needs SOFT mode and ARMED state (mode {self.mode}, state {self.status})"
            )
        self._fire(t)
        return "OK"

    def _ready_at(self, t: float) -> bool:
        """Would the device take a trigger at time t? Armed, with points left, and the point
        of the previous trigger ended by then on the device's own timeline."""
        if self.status == "IDLE" or (self.npoints and self._taken >= self.npoints):
            return False
        return t >= self._busy_until

    async def c_stop(self, args: list[str], client: Client) -> str:
        await self.stop_acquisition()
        return "OK"

    def c_read(self, args: list[str], client: Client) -> str | bytes:
        expect_args(args, 1)
        limit = arg_int(args, 0, "max")
        if limit < 0:
            raise SimError(8, "max must be >= 0")
        points = self.points[self.read_index : self.read_index + limit]
        first = self.read_index
        self.read_index += len(points)
        return self.format_read_at(first, points)

    def format_read_at(self, first: int, points: list[Any]) -> str | bytes:
        return self.format_read(points)

    # -- acquisition -------------------------------------------------------------------------

    def _fire(self, t: float) -> None:
        self._triggers.append(t)
        self._taken += 1
        self._busy_until = t + self.time
        self._trigger.set()

    def on_pulse(self, index: int, t: float, width: float) -> None:
        if self.mode == "EXT" and self._ready_at(t):
            self._fire(t)
        else:
            self.missed += 1

    async def _next_trigger(self) -> float:
        while not self._triggers:
            await self._trigger.wait()
            self._trigger = anyio.Event()
        return self._triggers.popleft()

    async def _run(self, scope: anyio.CancelScope) -> None:
        with scope:
            start = now()
            k = 0
            while self.npoints == 0 or k < self.npoints:
                if self.mode == "INT":
                    t0 = start + k * self.time
                else:
                    if not self._triggers:
                        self.status = "ARMED"
                    t0 = await self._next_trigger()
                    self.status = "BUSY"
                t1 = t0 + self.time
                await anyio.sleep(max(t1 - time.monotonic(), 0.0))
                await self.acquire_point(t0, t1)
                self.acquired += 1
                k += 1
            await self.acquisition_ended()
            self.status = "IDLE"
            self._scope = None

    async def stop_acquisition(self) -> None:
        scope, self._scope = self._scope, None
        if scope is not None:
            scope.cancel()
            with anyio.CancelScope(shield=True):
                await self.acquisition_ended()
        self.status = "IDLE"
        self._triggers.clear()

    def reset(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None
            self.task_group.start_soon(self.acquisition_ended)
        self.mode = None
        self.npoints = 0
        self.time = 0.0
        self.status = "IDLE"
        self._triggers.clear()
        self.acquired = self.read_index = self.missed = 0
        self.points = []

    def stats(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "mode": self.mode,
            "npoints": self.npoints,
            "acquired": self.acquired,
            "read": self.read_index,
            "missed": self.missed,
        }
