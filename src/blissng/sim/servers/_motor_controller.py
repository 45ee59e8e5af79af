"""A simulated serial motor controller: several axes, steps, trapezoidal motion that takes
real time, limit switches, an encoder that can slip, homing, errors. Protocol: see
docs/sim-protocols.md ("Motor controller")."""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import numpy as np

from blissng.sim.servers import _motion as motion
from blissng.sim.servers._base import (
    Client,
    SimError,
    Simulator,
    arg_float,
    expect_args,
    now,
)
from blissng.sim.servers._spec import AxisSpec, MotorControllerSpec

HISTORY = 256  # segments an axis remembers (a few seconds of busy scanning)


@dataclasses.dataclass(frozen=True)
class Segment:
    """How an axis behaved from ``t_from`` until the next segment: what the trigger box and
    the detectors need to evaluate past instants in batches (pulses are handled on the
    device's own timeline, possibly a few milliseconds after they happened)."""

    t_from: float
    motion: motion.Motion | None
    position: float  # steps, at rest
    real: float  # mechanics (steps) at the start of the motion, or at rest
    origin: float  # the motion's first position (steps)
    slip: float
    ratio: float
    encoder_offset: float

    def steps(self, times: np.ndarray) -> np.ndarray:
        if self.motion is None:
            return np.full(np.shape(times), self.position)
        return motion.positions(self.motion, times)

    def real_steps(self, times: np.ndarray) -> np.ndarray:
        if self.motion is None:
            return np.full(np.shape(times), self.real)
        return self.real + (self.steps(times) - self.origin) * (1.0 - self.slip)

    def encoder(self, times: np.ndarray) -> np.ndarray:
        return self.ratio * self.real_steps(times) + self.encoder_offset

    def steps_for_encoder(self, counts: np.ndarray) -> np.ndarray:
        """Motor positions (steps) where the encoder reads ``counts`` during this motion."""
        gain = self.ratio * (1.0 - self.slip)
        return self.origin + (counts - self.encoder_offset - self.ratio * self.real) / gain


class SimAxis:
    """One axis: rest state plus the motion in progress (evaluated from the clock), and the
    recent history of both (segments), for evaluating past instants."""

    def __init__(self, number: int, spec: AxisSpec) -> None:
        self.number = number
        self.spec = spec
        self.position = spec.position  # commanded steps, at rest
        self.real = spec.position  # where the mechanics are (encoder side), steps
        self.encoder_offset = 0.0
        self.velocity = spec.velocity
        self.acceleration = spec.acceleration
        self.low = spec.low_limit
        self.high = spec.high_limit
        self.slip = spec.slip
        self.ratio = spec.encoder_ratio
        self.home_position = spec.home_position
        self.enabled = True
        self.fault = False
        self.motion: motion.Motion | None = None
        self.homing = False
        self.history: collections.deque[Segment] = collections.deque(maxlen=HISTORY)
        self.record(-np.inf)

    def record(self, t: float) -> None:
        """Remember the axis' behaviour from ``t`` on (after anything that changes it)."""
        m = self.motion
        self.history.append(
            Segment(
                t_from=t,
                motion=m,
                position=self.position,
                real=self.real,
                origin=(m.phases[0].p0 if m.phases else self.position) if m else self.position,
                slip=self.slip,
                ratio=self.ratio,
                encoder_offset=self.encoder_offset,
            )
        )

    def segments(self, t0: float, t1: float) -> list[tuple[Segment, float, float]]:
        """The segments that cover ``(t0, t1]``, each with the part of it they cover."""
        result = []
        history = list(self.history)
        for i, segment in enumerate(history):
            end = history[i + 1].t_from if i + 1 < len(history) else np.inf
            lo, hi = max(segment.t_from, t0), min(end, t1)
            if hi > lo or (i == 0 and t1 <= segment.t_from):
                result.append((segment, lo, hi))
        return result

    def _at(self, times: np.ndarray, what: str) -> np.ndarray:
        t = np.asarray(times, dtype=np.float64)
        out = np.empty(t.shape)
        history = list(self.history)
        starts = np.array([s.t_from for s in history])
        which = np.maximum(np.searchsorted(starts, t, side="right") - 1, 0)
        for i in np.unique(which):
            selected = which == i
            out[selected] = getattr(history[i], what)(t[selected])
        return out

    def real_steps_at(self, times: np.ndarray) -> np.ndarray:
        """Where the mechanics were at each of ``times`` (steps), from the history."""
        self.update(float(np.max(times)) if np.size(times) else 0.0)
        return self._at(times, "real_steps")

    def encoder_at(self, times: np.ndarray) -> np.ndarray:
        """What the encoder read at each of ``times`` (counts, not rounded)."""
        self.update(float(np.max(times)) if np.size(times) else 0.0)
        return self._at(times, "encoder")

    def update(self, t: float) -> None:
        m = self.motion
        if m is None or t < m.end:
            return
        self.real = self._real_during(m, m.final)
        self.position = m.final
        self.motion = None
        if self.homing:
            self.homing = False
            if m.limit == 0:  # reached the home switch: it defines zero
                self.position = 0.0
                self.encoder_offset = -self.ratio * self.real
            self.record(m.end)

    def _real_during(self, m: motion.Motion, p: float) -> float:
        start = m.phases[0].p0 if m.phases else p
        return self.real + (p - start) * (1.0 - self.slip)

    def steps(self, t: float) -> float:
        self.update(t)
        return self.motion.at(t)[0] if self.motion else self.position

    def real_steps(self, t: float) -> float:
        self.update(t)
        if self.motion is None:
            return self.real
        return self._real_during(self.motion, self.motion.at(t)[0])

    def encoder(self, t: float) -> float:
        return self.ratio * self.real_steps(t) + self.encoder_offset

    def moving(self, t: float) -> bool:
        self.update(t)
        return self.motion is not None

    def state(self, t: float) -> str:
        self.update(t)
        if self.fault:
            return "FAULT"
        if not self.enabled:
            return "DISABLED"
        if self.motion is not None:
            return "HOMING" if self.homing else "MOVING"
        if self.position >= self.high:
            return "LIMPOS"
        if self.position <= self.low:
            return "LIMNEG"
        return "READY"

    def check_can_move(self, t: float, target: float) -> None:
        state = self.state(t)
        if state in ("MOVING", "HOMING"):
            raise SimError(4, f"axis {self.number} is moving")
        if state == "FAULT":
            raise SimError(7, f"axis {self.number} is in fault (RST {self.number} clears it)")
        if state == "DISABLED":
            raise SimError(6, f"axis {self.number} is disabled (ON {self.number} enables it)")
        if target > self.position and self.position >= self.high:
            raise SimError(5, f"axis {self.number} is at its positive limit")
        if target < self.position and self.position <= self.low:
            raise SimError(5, f"axis {self.number} is at its negative limit")

    def start(self, t: float, target: float, homing: bool = False) -> None:
        self.motion = motion.move(
            t, self.position, target, self.velocity, self.acceleration, self.low, self.high
        )
        self.homing = homing
        self.record(t)

    def stop(self, t: float, abrupt: bool) -> None:
        self.update(t)
        if self.motion is None:
            return
        m = self.motion
        stopped = motion.stop(m, t, None if abrupt else self.acceleration, self.low, self.high)
        # Keep the mechanics' origin: the stop continues the same motion.
        start = m.phases[0].p0 if m.phases else self.position
        if stopped.phases:
            self.motion = motion.Motion(
                (motion.Phase(m.start, start, 0.0, 0.0, 0.0), *stopped.phases),
                m.start,
                stopped.end,
                stopped.final,
                stopped.limit,
            )
        else:
            self.motion = motion.Motion(
                (motion.Phase(m.start, start, 0.0, 0.0, 0.0),), m.start, t, stopped.final
            )
        self.homing = False
        self.record(t)


class MotorControllerSim(Simulator):
    kind = "motor_controller"
    reply_eol = b"\r\n"

    def __init__(self, name: str, spec: MotorControllerSpec, host: Any) -> None:
        super().__init__(name, spec, host)
        self.axes: dict[int, SimAxis] = {}
        self.reset()
        self.commands = {
            "*IDN?": lambda a, c: f"SIMMOT {len(self.axes)} 1.0",
            "?POS": self.q_pos,
            "?ENC": self.q_enc,
            "?STA": self.q_sta,
            "?VEL": lambda a, c: f"{self._axis(a).velocity:g}",
            "?ACC": lambda a, c: f"{self._axis(a).acceleration:g}",
            "?LIM": self.q_lim,
            "VEL": self.c_vel,
            "ACC": self.c_acc,
            "MOV": self.c_mov,
            "MVR": self.c_mvr,
            "STP": self.c_stp,
            "ABT": self.c_abt,
            "HOME": self.c_home,
            "POS": self.c_pos,
            "ENC": self.c_enc,
            "ON": self.c_on,
            "OFF": self.c_off,
            "RST": self.c_rst,
        }

    def reset(self) -> None:
        self.axes = {i + 1: SimAxis(i + 1, s) for i, s in enumerate(self.spec.axes)}

    # -- helpers -----------------------------------------------------------------------------

    def _axis_number(self, word: str) -> SimAxis:
        try:
            number = int(word)
        except ValueError:
            raise SimError(2, f"axis {word!r} is not a number") from None
        axis = self.axes.get(number)
        if axis is None:
            raise SimError(3, f"unknown axis {number} (axes are 1..{len(self.axes)})")
        return axis

    def _axis(self, args: list[str]) -> SimAxis:
        expect_args(args, 1)
        return self._axis_number(args[0])

    def real_positions(self, t: float) -> dict[int, float]:
        """Where the mechanics of each axis are (steps): what simulated counters see."""
        return {n: axis.real_steps(t) for n, axis in self.axes.items()}

    def real_positions_at(self, times: np.ndarray, axes: Any = None) -> dict[int, np.ndarray]:
        """The same at many past instants (arrays shaped like ``times``), for ``axes``
        (numbers; default every axis)."""
        numbers = self.axes if axes is None else axes
        return {n: self.axes[n].real_steps_at(times) for n in numbers if n in self.axes}

    # -- queries -----------------------------------------------------------------------------

    def q_pos(self, args: list[str], client: Client) -> str:
        t = now()
        if not args:
            return " ".join(str(round(a.steps(t))) for a in self.axes.values())
        return str(round(self._axis(args).steps(t)))

    def q_enc(self, args: list[str], client: Client) -> str:
        return str(round(self._axis(args).encoder(now())))

    def q_sta(self, args: list[str], client: Client) -> str:
        t = now()
        if not args:
            return " ".join(a.state(t) for a in self.axes.values())
        return self._axis(args).state(t)

    def q_lim(self, args: list[str], client: Client) -> str:
        axis = self._axis(args)
        return f"{axis.low:g} {axis.high:g}"

    # -- settings ----------------------------------------------------------------------------

    def _setting(self, args: list[str], attribute: str, what: str) -> str:
        expect_args(args, 2)
        axis = self._axis_number(args[0])
        value = arg_float(args, 1, what)
        if value <= 0:
            raise SimError(8, f"{what} must be > 0, got {value:g}")
        if axis.moving(now()):
            raise SimError(4, f"axis {axis.number} is moving")
        setattr(axis, attribute, value)
        return "OK"

    def c_vel(self, args: list[str], client: Client) -> str:
        return self._setting(args, "velocity", "velocity")

    def c_acc(self, args: list[str], client: Client) -> str:
        return self._setting(args, "acceleration", "acceleration")

    # -- motion ------------------------------------------------------------------------------

    def _moves(self, args: list[str], relative: bool) -> str:
        if not args or len(args) % 2:
            raise SimError(2, "expected <axis> <steps> pairs")
        t = now()
        targets: list[tuple[SimAxis, float]] = []
        for i in range(0, len(args), 2):
            axis = self._axis_number(args[i])
            value = arg_float(args, i + 1, "position")
            if any(a is axis for a, _ in targets):
                raise SimError(2, f"axis {axis.number} given twice")
            target = axis.steps(t) + value if relative else value
            targets.append((axis, target))
        for axis, target in targets:
            axis.check_can_move(t, target)
        for axis, target in targets:
            axis.start(t, target)
        return "OK"

    def c_mov(self, args: list[str], client: Client) -> str:
        return self._moves(args, relative=False)

    def c_mvr(self, args: list[str], client: Client) -> str:
        return self._moves(args, relative=True)

    def _stop(self, args: list[str], abrupt: bool) -> str:
        axes = [self._axis_number(w) for w in args] if args else list(self.axes.values())
        t = now()
        for axis in axes:
            axis.stop(t, abrupt)
        return "OK"

    def c_stp(self, args: list[str], client: Client) -> str:
        return self._stop(args, abrupt=False)

    def c_abt(self, args: list[str], client: Client) -> str:
        return self._stop(args, abrupt=True)

    def c_home(self, args: list[str], client: Client) -> str:
        expect_args(args, 1, 2)
        axis = self._axis_number(args[0])
        t = now()
        target = axis.home_position
        if len(args) == 2:
            if args[1] not in ("+", "-"):
                raise SimError(2, f"home direction must be + or -, got {args[1]!r}")
            wanted = 1 if args[1] == "+" else -1
            here = axis.steps(t)
            if (target - here) * wanted <= 0 and target != here:
                # The switch is not that way: the search ends on a limit switch.
                target = axis.high + 1 if wanted > 0 else axis.low - 1
        axis.check_can_move(t, target)
        axis.start(t, target, homing=True)
        return "OK"

    def c_pos(self, args: list[str], client: Client) -> str:
        expect_args(args, 2)
        axis = self._axis_number(args[0])
        value = arg_float(args, 1, "position")
        if axis.moving(now()):
            raise SimError(4, f"axis {axis.number} is moving")
        axis.position = value
        axis.record(now())
        return "OK"

    def c_enc(self, args: list[str], client: Client) -> str:
        expect_args(args, 2)
        axis = self._axis_number(args[0])
        value = arg_float(args, 1, "encoder counts")
        t = now()
        axis.encoder_offset = value - axis.ratio * axis.real_steps(t)
        axis.record(t)
        return "OK"

    def c_on(self, args: list[str], client: Client) -> str:
        self._axis(args).enabled = True
        return "OK"

    def c_off(self, args: list[str], client: Client) -> str:
        axis = self._axis(args)
        axis.stop(now(), abrupt=True)
        axis.enabled = False
        return "OK"

    def c_rst(self, args: list[str], client: Client) -> str:
        self._axis(args).fault = False
        return "OK"

    # -- control ops -------------------------------------------------------------------------

    def control_configure_axis(self, axis: int, **fields: Any) -> dict[str, Any]:
        sim_axis = self.axes.get(int(axis))
        if sim_axis is None:
            raise ValueError(f"{self.name}: unknown axis {axis} (axes are 1..{len(self.axes)})")
        t = now()
        if sim_axis.moving(t):
            raise ValueError(f"{self.name}: axis {axis} is moving; configure it at rest")
        names = {
            "position": "position",
            "velocity": "velocity",
            "acceleration": "acceleration",
            "low_limit": "low",
            "high_limit": "high",
            "slip": "slip",
            "encoder_ratio": "ratio",
            "home_position": "home_position",
        }
        for key, value in fields.items():
            if key not in names:
                raise ValueError(f"{self.name}: unknown axis field {key!r}; use {sorted(names)}")
            setattr(sim_axis, names[key], float(value))
            if key == "position":
                sim_axis.real = float(value)
                sim_axis.encoder_offset = 0.0
        sim_axis.record(t)
        return self._axis_info(sim_axis, t)

    def control_axis_fault(self, axis: int, on: bool = True) -> None:
        sim_axis = self.axes[int(axis)]
        if on:
            sim_axis.stop(now(), abrupt=True)
        sim_axis.fault = bool(on)

    def control_positions(self) -> dict[str, float]:
        t = now()
        return {str(n): a.steps(t) for n, a in self.axes.items()}

    def _axis_info(self, axis: SimAxis, t: float) -> dict[str, Any]:
        return {
            "position": axis.steps(t),
            "encoder": axis.encoder(t),
            "state": axis.state(t),
            "velocity": axis.velocity,
            "acceleration": axis.acceleration,
            "low_limit": axis.low,
            "high_limit": axis.high,
            "slip": axis.slip,
        }

    def stats(self) -> dict[str, Any]:
        t = now()
        return {"axes": {str(n): self._axis_info(a, t) for n, a in self.axes.items()}}
