"""``MockupController``: an in-process simulated motor controller (BLISS's Mockup).

Motion follows a trapezoidal profile computed from the clock (no task runs): ``state`` is
MOVING until the profile's end time, ``read_position`` interpolates. With ``instant: true`` a
move ends the moment it starts, so a step scan costs no motion time and never sleeps.
Simulated hardware limit switches (``hard_low``/``hard_high``, dial units) stop a motion and
report LIMNEG/LIMPOS; ``encoder_error`` (dial units) makes the encoder disagree, as lost steps
would. ``sim_*`` methods change the simulated hardware at run time (tests, demos).
"""

from __future__ import annotations

import math
import time
from typing import ClassVar

from pydantic import Field

from blissng.devices import (
    Axis,
    AxisController,
    AxisControllerParameters,
    AxisParameters,
    AxisState,
    DeviceError,
    Motion,
)


class MockupAxisParameters(AxisParameters):
    initial_position: float = Field(0.0, description="dial position at power-on")
    hard_low: float | None = Field(None, description="negative limit switch, dial units")
    hard_high: float | None = Field(None, description="positive limit switch, dial units")
    encoder_error: float = Field(0.0, description="simulated encoder error, dial units")


class MockupParameters(AxisControllerParameters):
    axes: list[MockupAxisParameters] = Field(default_factory=list)  # type: ignore[assignment]
    instant: bool = Field(False, description="moves take no time (benchmarks, fast tests)")


class _SimAxis:
    """The simulated hardware of one axis, in steps and seconds."""

    __slots__ = (
        "acceleration",
        "end_state",
        "end_time",
        "position",
        "start",
        "start_time",
        "state",
        "target",
        "velocity",
    )

    def __init__(self, position: float) -> None:
        self.position = position
        self.start = position
        self.target = position
        self.start_time = 0.0
        self.end_time = 0.0
        self.velocity = 1.0
        self.acceleration = 10.0
        self.state = AxisState.READY
        self.end_state = AxisState.READY


def motion_time(distance: float, velocity: float, acceleration: float) -> float:
    """Duration of a trapezoidal (or triangular) profile over ``distance``."""
    distance = abs(distance)
    if distance == 0:
        return 0.0
    if distance >= velocity * velocity / acceleration:
        return distance / velocity + velocity / acceleration
    return 2.0 * math.sqrt(distance / acceleration)


def travelled(elapsed: float, distance: float, velocity: float, acceleration: float) -> float:
    """Distance covered after ``elapsed`` seconds of the profile (absolute value)."""
    distance = abs(distance)
    total = motion_time(distance, velocity, acceleration)
    if elapsed >= total:
        return distance
    ramp = min(velocity / acceleration, total / 2)
    peak = acceleration * ramp
    if elapsed < ramp:
        return 0.5 * acceleration * elapsed * elapsed
    ramp_distance = 0.5 * acceleration * ramp * ramp
    if elapsed <= total - ramp:
        return ramp_distance + peak * (elapsed - ramp)
    remaining = total - elapsed
    return distance - 0.5 * acceleration * remaining * remaining


class MockupController(AxisController):
    """Simulated motor controller living in the process; see the module docstring."""

    AxisParameters: ClassVar[type[AxisParameters]] = MockupAxisParameters
    Parameters: ClassVar[type[AxisControllerParameters]] = MockupParameters

    def __init__(
        self, name: str, params: AxisControllerParameters | None = None, *, settings=None
    ) -> None:
        super().__init__(name, params, settings=settings)
        self.instant = bool(getattr(self.params, "instant", False))
        self.hw: dict[str, _SimAxis] = {}
        self.started_at: dict[str, float] = {}  # perf_counter of the last start, per axis
        self.stopped_at: dict[str, float] = {}

    def _sim(self, axis: Axis) -> _SimAxis:
        hw = self.hw.get(axis.name)
        if hw is None:
            params = axis.params
            initial = getattr(params, "initial_position", 0.0)
            hw = self.hw[axis.name] = _SimAxis(initial * axis.steps_per_unit)
        return hw

    def _update(self, axis: Axis, hw: _SimAxis) -> None:
        if hw.state is not AxisState.MOVING:
            return
        now = time.perf_counter()
        if now >= hw.end_time:
            hw.position = hw.target
            hw.state = hw.end_state
            self.stopped_at[axis.name] = hw.end_time
            return
        done = travelled(now - hw.start_time, hw.target - hw.start, hw.velocity, hw.acceleration)
        hw.position = hw.start + math.copysign(done, hw.target - hw.start)

    # ------------------------------------------------------------------ hardware interface

    async def initialize_axis(self, axis: Axis) -> None:
        self._sim(axis)

    async def read_position(self, axis: Axis) -> float:
        hw = self._sim(axis)
        self._update(axis, hw)
        return hw.position

    async def state(self, axis: Axis) -> AxisState:
        hw = self._sim(axis)
        self._update(axis, hw)
        return hw.state

    async def start_one(self, motion: Motion) -> None:
        self._start(motion, time.perf_counter())

    async def start_all(self, *motions: Motion) -> None:
        now = time.perf_counter()
        for motion in motions:
            self._start(motion, now)

    def _start(self, motion: Motion, now: float) -> None:
        axis = motion.axis
        hw = self._sim(axis)
        self._update(axis, hw)
        if hw.state is AxisState.MOVING:
            raise DeviceError(self.name, f"axis {axis.name} is already moving")
        if hw.state in (AxisState.FAULT, AxisState.DISABLED):
            raise DeviceError(self.name, f"axis {axis.name} is {hw.state.value}")
        target = motion.target_steps
        end_state = AxisState.READY
        spu = axis.steps_per_unit
        dial = target / spu
        low, high = getattr(axis.params, "hard_low", None), getattr(axis.params, "hard_high", None)
        if high is not None and dial > high:
            target, end_state = high * spu, AxisState.LIMPOS
        elif low is not None and dial < low:
            target, end_state = low * spu, AxisState.LIMNEG
        hw.start = hw.position
        hw.target = target
        hw.end_state = end_state
        hw.start_time = now
        self.started_at[axis.name] = now
        if self.instant:
            hw.position = target
            hw.state = end_state
            hw.end_time = now
            self.stopped_at[axis.name] = now
            return
        hw.end_time = now + motion_time(target - hw.start, hw.velocity, hw.acceleration)
        hw.state = AxisState.MOVING

    async def stop(self, axis: Axis) -> None:
        hw = self._sim(axis)
        self._update(axis, hw)
        if hw.state is AxisState.MOVING:
            hw.state = AxisState.READY
            hw.target = hw.position
            self.stopped_at[axis.name] = time.perf_counter()

    async def stop_all(self, *axes: Axis) -> None:
        for axis in axes:
            await self.stop(axis)

    async def set_velocity(self, axis: Axis, steps_per_second: float) -> None:
        self._sim(axis).velocity = abs(steps_per_second)

    async def set_acceleration(self, axis: Axis, steps_per_second2: float) -> None:
        self._sim(axis).acceleration = abs(steps_per_second2)

    async def home(self, axis: Axis, direction: int | None) -> None:
        """The home switch is at dial 0: move there, then the position reads 0."""
        await self.start_one(Motion(axis, 0.0, -self._sim(axis).position))

    async def read_encoder(self, axis: Axis) -> float:
        hw = self._sim(axis)
        self._update(axis, hw)
        encoder = axis.encoder
        enc_spu = encoder.steps_per_unit if encoder is not None else axis.steps_per_unit
        error = getattr(axis.params, "encoder_error", 0.0)
        return (hw.position / axis.steps_per_unit + error) * enc_spu

    async def set_position(self, axis: Axis, steps: float) -> None:
        hw = self._sim(axis)
        self._update(axis, hw)
        if hw.state is AxisState.MOVING:
            raise DeviceError(self.name, f"cannot set the position of moving {axis.name}")
        hw.position = hw.target = float(steps)

    # ------------------------------------------------------------------ simulator knobs

    def sim_set_state(self, axis: Axis, state: AxisState) -> None:
        """Force the simulated hardware state (FAULT, DISABLED, READY)."""
        self._sim(axis).state = state

    def sim_set_encoder_error(self, axis: Axis, error: float) -> None:
        """Make the encoder read ``error`` dial units away from the motor position."""
        axis.params = axis.params.model_copy(update={"encoder_error": float(error)})

    def sim_set_position(self, axis: Axis, dial: float) -> None:
        """Move the simulated hardware behind the axis' back (a power cycle, a manual move)."""
        hw = self._sim(axis)
        hw.position = hw.target = dial * axis.steps_per_unit
