"""The acquisition state machine shared by the triggered detectors (scaler, MCA, camera):
``PREP n time INT|SOFT|EXT``, ``START``, ``TRIG``, external pulses, ``STOP``, ``?STA``,
``?NPT``, ``?MISS``, ``READ max``.

Points are made in batches on the device's own timeline: a trigger (``TRIG``, an external
pulse, or the internal clock) starts a point at a known instant; one task per acquisition
completes every point whose time has elapsed in one go (``acquire_points`` with arrays of
start and end times), so a 10 kHz pulse train costs a few wake-ups per millisecond, not one
per pulse. A device reports ``IDLE`` only once every point is readable.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from typing import Any

import anyio
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
from blissng.sim.servers._peaks import peak_rates
from blissng.sim.servers._spec import PeakSpec

MODES = ("INT", "SOFT", "EXT")
#: A trigger this close to the end of the previous point still starts a point: pulses one
#: exposure apart must not be missed for a rounding error of their computed times.
TIMING_TOLERANCE = 1e-9
#: Noisy spectra or frames drawn per exposure time, picked at random for each point.
POOL_SIZE = 256


class PointBuffer:
    """Points acquired and not yet read, kept as the arrays they were made in (axis 0 is the
    point), so a READ of many points is one concatenation."""

    def __init__(self) -> None:
        self.chunks: collections.deque[np.ndarray] = collections.deque()
        self.read = 0  # points handed out so far

    def append(self, points: np.ndarray) -> None:
        if len(points):
            self.chunks.append(points)

    def take(self, limit: int) -> np.ndarray | None:
        """Up to ``limit`` unread points, oldest first (None if there are none)."""
        taken: list[np.ndarray] = []
        wanted = limit
        while wanted > 0 and self.chunks:
            chunk = self.chunks[0]
            if len(chunk) <= wanted:
                taken.append(self.chunks.popleft())
                wanted -= len(chunk)
            else:
                taken.append(chunk[:wanted])
                self.chunks[0] = chunk[wanted:]
                wanted = 0
        if not taken:
            return None
        points = taken[0] if len(taken) == 1 else np.concatenate(taken)
        self.read += len(points)
        return points


class TriggeredDetector(Simulator):
    """Subclasses implement ``acquire_points(t0, t1)`` (make the points that started at the
    instants ``t0`` and ended at ``t1``, arrays, and return them as one array, axis 0 the
    point) and ``format_read(first, points)`` (``points`` None when there are none)."""

    def __init__(self, name: str, spec: Any, host: Any) -> None:
        super().__init__(name, spec, host)
        self.mode: str | None = None
        self.npoints = 0
        self.time = 0.0
        self.status = "IDLE"
        self.acquired = 0
        self.missed = 0
        self.buffer = PointBuffer()
        self._scope: anyio.CancelScope | None = None
        # Triggers taken on the device's own timeline (this process may be late to act on
        # them on a busy machine, the simulated device is not): start times of points in
        # progress, in order.
        self._pending = np.empty(0)
        self._taken = 0  # triggers accepted since START
        self._busy_until = -math.inf  # nominal end of the last accepted trigger's point
        self._trigger = anyio.Event()
        self._pools: dict[float, np.ndarray] = {}
        self.np_rng = self._new_rng()
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

    async def acquire_points(self, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def format_read(self, first: int, points: np.ndarray | None) -> str | bytes:
        raise NotImplementedError

    def scale_factors(
        self, scale: PeakSpec | None, t0: np.ndarray, t1: np.ndarray
    ) -> np.ndarray | None:
        """Intensity factors (0..1) of points from the motors' positions at their middle, for
        a detector whose spec has a ``scale`` peak (None without one)."""
        motors_name = getattr(self.spec, "motors", None)
        motors = self.host.simulator_named(motors_name) if motors_name else None
        if scale is None or motors is None:
            return None
        positions = motors.real_positions_at(0.5 * (t0 + t1), sorted(scale.axes))
        return peak_rates(scale, positions) / max(scale.height + scale.background, 1e-12)

    def noise_pool(self, exposure: float, draw: Callable[[int], np.ndarray]) -> np.ndarray:
        """``POOL_SIZE`` noisy points drawn once per exposure time (``draw(n)``), from which
        points are picked at random: a fast pulse train then costs a copy per point."""
        pool = self._pools.get(exposure)
        if pool is None:
            if len(self._pools) >= 4:
                self._pools.clear()
            pool = self._pools[exposure] = draw(POOL_SIZE)
        return pool

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
        self.acquired = self.missed = 0
        self.buffer = PointBuffer()
        self._pending = np.empty(0)
        self._taken = 0
        self._busy_until = -math.inf
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
        self._fire(np.array([t]))
        return "OK"

    def _ready_at(self, t: float) -> bool:
        """Would the device take a trigger at time t? Armed, with points left, and the point
        of the previous trigger ended by then on the device's own timeline."""
        if self.status == "IDLE" or (self.npoints and self._taken >= self.npoints):
            return False
        return t >= self._busy_until - TIMING_TOLERANCE

    async def c_stop(self, args: list[str], client: Client) -> str:
        await self.stop_acquisition()
        return "OK"

    def c_read(self, args: list[str], client: Client) -> str | bytes:
        expect_args(args, 1)
        limit = arg_int(args, 0, "max")
        if limit < 0:
            raise SimError(8, "max must be >= 0")
        first = self.buffer.read
        return self.format_read(first, self.buffer.take(limit))

    # -- acquisition -------------------------------------------------------------------------

    def _fire(self, times: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, times]) if len(self._pending) else times
        self._taken += len(times)
        self._busy_until = float(times[-1]) + self.time
        self._trigger.set()

    def on_pulses(self, times: np.ndarray, width: float) -> None:
        """Pulses of the trigger box at ``times`` (sorted): each starts a point if the device
        is armed in ``EXT`` mode, has points left and is not busy; otherwise it is missed and
        counted (``?MISS``), never ignored silently."""
        if self.mode != "EXT" or self.status == "IDLE":
            self.missed += len(times)
            return
        left = self.npoints - self._taken if self.npoints else len(times)
        if times[0] >= self._busy_until - TIMING_TOLERANCE and (
            len(times) == 1 or np.diff(times).min() >= self.time - TIMING_TOLERANCE
        ):  # the usual case, a train slower than the exposure: every pulse is taken
            taken = times[:left]
        else:
            accepted: list[float] = []
            busy_until = self._busy_until
            for t in times.tolist():
                if len(accepted) < left and t >= busy_until - TIMING_TOLERANCE:
                    accepted.append(t)
                    busy_until = t + self.time
            taken = np.array(accepted)
        self.missed += len(times) - len(taken)
        if len(taken):
            self._fire(taken)

    async def _due(self, start: float, done: int) -> np.ndarray:
        """Start times of the points whose time has elapsed (at least one: waits for it)."""
        while True:
            t = now()
            if self.mode == "INT":
                ended = int((t - start) / self.time)
                if self.npoints:
                    ended = min(ended, self.npoints)
                if ended > done:
                    return start + np.arange(done, ended) * self.time
                await anyio.sleep(max(start + (done + 1) * self.time - time.monotonic(), 0.0))
                continue
            pending = self._pending
            if not len(pending):
                self.status = "ARMED"
                await self._trigger.wait()
                self._trigger = anyio.Event()
                continue
            self.status = "BUSY"
            ended = int(np.searchsorted(pending + self.time, t, side="right"))
            if ended:
                self._pending = pending[ended:]
                return pending[:ended]
            await anyio.sleep(max(pending[0] + self.time - time.monotonic(), 0.0))

    async def _run(self, scope: anyio.CancelScope) -> None:
        with scope:
            start = now()
            done = 0
            while self.npoints == 0 or done < self.npoints:
                t0 = await self._due(start, done)
                points = await self.acquire_points(t0, t0 + self.time)
                self.buffer.append(points)
                done += len(t0)
                self.acquired = done
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
        self._pending = np.empty(0)

    def _new_rng(self) -> np.random.Generator:
        """The noise generator: seeded from the host's seed and the simulator's name, and
        seeded again by ``reset``, so a test sees the same noise whatever ran before it."""
        seed = self.host.spec.seed
        return np.random.default_rng(None if seed is None else [seed, *self.name.encode()])

    def reset(self) -> None:
        self.np_rng = self._new_rng()
        self._pools = {}
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None
            self.task_group.start_soon(self.acquisition_ended)
        self.mode = None
        self.npoints = 0
        self.time = 0.0
        self.status = "IDLE"
        self._pending = np.empty(0)
        self.acquired = self.missed = 0
        self.buffer = PointBuffer()

    def stats(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "mode": self.mode,
            "npoints": self.npoints,
            "acquired": self.acquired,
            "read": self.buffer.read,
            "missed": self.missed,
        }
