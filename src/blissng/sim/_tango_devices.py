"""Simulated Tango devices: a motor and a counter, served by :mod:`blissng.sim._tango_server`.

They speak real Tango (pytango device servers, asyncio green mode), without a Tango database.

``SimTangoMotor`` follows the usual Tango Motor interface: ``Position`` (read/write: writing
starts a move; its ``min_value``/``max_value`` are the software limits, refused by Tango
itself), ``Velocity``, ``Acceleration``, ``State`` (ON at rest, MOVING, ALARM on a limit
switch, FAULT, OFF), ``Status``, ``Limit_switches`` (``[home, upper, lower]``, as Sardana
motors) and the commands ``Stop`` and ``Abort``. Motion follows the simulators' trapezoidal
profile (:mod:`blissng.sim.servers._motion`); hardware limit switches cut it short. Change
events are pushed for ``State``, ``Limit_switches`` and, while moving, ``Position`` (every
``EVENT_PERIOD``), so clients need not poll.

``SimTangoCounter``: ``Counts`` (a gaussian peak over a motor's position, plus noise),
``Spectrum`` (a 1D attribute: a line whose height follows ``Counts``) and ``Setpoint``, a
read/write attribute a client may scan like a motor (``Readback`` follows it at once).

Both have the simulator-only commands ``Configure`` (a JSON object of fields to change) and
``Reset`` (back to the start-up state), which tests use to set limits or inject a fault.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from typing import Any, ClassVar

import numpy as np
from tango import AttrWriteType, DevState, GreenMode
from tango.server import Device, attribute, command, device_property

from blissng.sim.servers import _motion as motion

EVENT_PERIOD = 0.02  # seconds between Position events while a motor moves
SPECTRUM_BINS = 256

_MOTORS: dict[str, SimTangoMotor] = {}  # device name -> motor, for the counters' peaks


def _now() -> float:
    return time.monotonic()


class SimTangoMotor(Device):
    """A motor with trapezoidal motion, limit switches and pushed change events."""

    green_mode = GreenMode.Asyncio

    initial_position = device_property(dtype=float, default_value=0.0)
    initial_velocity = device_property(dtype=float, default_value=2.0)
    initial_acceleration = device_property(dtype=float, default_value=20.0)

    DEFAULTS: ClassVar[dict[str, float]] = {
        "hard_low": -1e9,  # limit switches, in position units
        "hard_high": 1e9,
    }

    async def init_device(self) -> None:
        await super().init_device()
        self._task: asyncio.Task[None] | None = None
        self._reset_model()
        for name in ("State", "Position", "Limit_switches"):
            self.set_change_event(name, True, False)
        _MOTORS[self.get_name().lower()] = self

    def _reset_model(self) -> None:
        self._position = float(self.initial_position)
        self._velocity = float(self.initial_velocity)
        self._acceleration = float(self.initial_acceleration)
        self._hard_low = self.DEFAULTS["hard_low"]
        self._hard_high = self.DEFAULTS["hard_high"]
        self._motion: motion.Motion | None = None
        self._switches = [False, False, False]
        self._set_limits(None, None)
        self.set_state(DevState.ON)
        self.set_status("The motor is at rest")

    async def delete_device(self) -> None:
        if self._task is not None:
            self._task.cancel()
        _MOTORS.pop(self.get_name().lower(), None)

    # -- the model ---------------------------------------------------------------------------

    def position_at(self, t: float) -> float:
        m = self._motion
        return m.at(t)[0] if m is not None else self._position

    def _set_limits(self, low: float | None, high: float | None) -> None:
        attr = self.get_device_attr().get_w_attr_by_name("Position")
        props = attr.get_properties()
        props.min_value = "Not specified" if low is None else repr(float(low))
        props.max_value = "Not specified" if high is None else repr(float(high))
        attr.set_properties(props)

    def _start(self, target: float) -> None:
        state = self.get_state()
        if state == DevState.MOVING:
            self._fail("MotorMoving", "the motor is already moving: stop it or wait")
        if state in (DevState.FAULT, DevState.OFF):
            self._fail("MotorNotReady", f"the motor is {state}; Reset it first")
        here = self._position
        if (target > here and self._switches[1]) or (target < here and self._switches[2]):
            self._fail("MotorOnLimit", "the motor is on a limit switch in that direction")
        t = _now()
        self._motion = motion.move(
            t, here, target, self._velocity, self._acceleration, self._hard_low, self._hard_high
        )
        self._switches = [False, False, False]
        self.set_state(DevState.MOVING)
        self.set_status(f"Moving to {target:g}")
        self.push_change_event("State")
        self.push_change_event("Limit_switches", self._switches)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        """Push Position events while moving; end the motion on time (or on a switch)."""
        while self._motion is not None:
            t = _now()
            m = self._motion
            if t >= m.end:
                self._finish(m)
                return
            self.push_change_event("Position", m.at(t)[0])
            await asyncio.sleep(min(EVENT_PERIOD, max(m.end - t, 0.0)))

    def _finish(self, m: motion.Motion) -> None:
        self._position = m.final if not math.isnan(m.final) else self._position
        self._motion = None
        if m.limit:
            self._switches = [False, m.limit > 0, m.limit < 0]
            self.set_state(DevState.ALARM)
            side = "upper" if m.limit > 0 else "lower"
            self.set_status(f"Stopped on the {side} limit switch at {self._position:g}")
        else:
            self.set_state(DevState.ON)
            self.set_status("The motor is at rest")
        self.push_change_event("Position", self._position)
        self.push_change_event("Limit_switches", self._switches)
        self.push_change_event("State")

    def _stop(self, abrupt: bool) -> None:
        m = self._motion
        if m is None:
            return
        t = _now()
        acc = None if abrupt else self._acceleration
        stopped = motion.stop(m, t, acc, self._hard_low, self._hard_high)
        if not stopped.phases:
            self._finish(stopped)
        else:
            self._motion = stopped

    @staticmethod
    def _fail(reason: str, desc: str) -> None:
        from tango import Except

        Except.throw_exception(reason, desc, "SimTangoMotor")

    # -- attributes --------------------------------------------------------------------------

    @attribute(dtype=float, access=AttrWriteType.READ_WRITE, unit="mm", format="%8.4f")
    async def Position(self) -> float:
        return self.position_at(_now())

    @Position.write  # type: ignore[no-redef]
    async def Position(self, value: float) -> None:
        self._start(float(value))

    @attribute(dtype=float, access=AttrWriteType.READ_WRITE, unit="mm/s")
    async def Velocity(self) -> float:
        return self._velocity

    @Velocity.write  # type: ignore[no-redef]
    async def Velocity(self, value: float) -> None:
        if value <= 0:
            self._fail("BadVelocity", f"velocity must be > 0, got {value:g}")
        self._velocity = float(value)

    @attribute(dtype=float, access=AttrWriteType.READ_WRITE, unit="mm/s2")
    async def Acceleration(self) -> float:
        return self._acceleration

    @Acceleration.write  # type: ignore[no-redef]
    async def Acceleration(self, value: float) -> None:
        if value <= 0:
            self._fail("BadAcceleration", f"acceleration must be > 0, got {value:g}")
        self._acceleration = float(value)

    @attribute(dtype=(bool,), max_dim_x=3)
    async def Limit_switches(self) -> list[bool]:
        return self._switches

    # -- commands ----------------------------------------------------------------------------

    @command
    async def Stop(self) -> None:
        """Decelerate to rest."""
        self._stop(abrupt=False)

    @command
    async def Abort(self) -> None:
        """Stop at once."""
        self._stop(abrupt=True)

    @command(
        dtype_in=str,
        doc_in="JSON object: position, velocity, acceleration, "
        "hard_low, hard_high, low_limit, high_limit (null: none), state (ON/FAULT/OFF)",
    )
    async def Configure(self, text: str) -> None:
        """Simulator only: change the model (at rest)."""
        fields: dict[str, Any] = json.loads(text)
        if self._motion is not None:
            self._fail("MotorMoving", "configure the simulated motor at rest")
        if "position" in fields:
            self._position = float(fields.pop("position"))
        if "velocity" in fields:
            self._velocity = float(fields.pop("velocity"))
        if "acceleration" in fields:
            self._acceleration = float(fields.pop("acceleration"))
        if "hard_low" in fields:
            self._hard_low = float(fields.pop("hard_low"))
        if "hard_high" in fields:
            self._hard_high = float(fields.pop("hard_high"))
        if "low_limit" in fields or "high_limit" in fields:
            self._set_limits(fields.pop("low_limit", None), fields.pop("high_limit", None))
        if "state" in fields:
            self.set_state(getattr(DevState, str(fields.pop("state")).upper()))
            self.push_change_event("State")
        if fields:
            self._fail("BadField", f"unknown fields {sorted(fields)}")

    @command
    async def Reset(self) -> None:
        """Simulator only: back to the start-up state (motion stopped at once)."""
        self._stop(abrupt=True)
        self._reset_model()
        self.push_change_event("State")
        self.push_change_event("Position", self._position)


class SimTangoCounter(Device):
    """Counts peaking over a motor's position, a spectrum, and a settable attribute."""

    green_mode = GreenMode.Asyncio

    motor = device_property(dtype=str, default_value="sim/motor/1")
    center = device_property(dtype=float, default_value=1.0)
    sigma = device_property(dtype=float, default_value=0.5)
    height = device_property(dtype=float, default_value=1000.0)
    background = device_property(dtype=float, default_value=10.0)
    noise = device_property(dtype=float, default_value=0.01)
    seed = device_property(dtype=int, default_value=0)

    async def init_device(self) -> None:
        await super().init_device()
        self._rng = random.Random(self.seed)
        self._setpoint = 0.0
        self.set_state(DevState.ON)

    def _counts(self) -> float:
        m = _MOTORS.get(str(self.motor).lower())
        p = m.position_at(_now()) if m is not None else 0.0
        peak = self.height * math.exp(-0.5 * ((p - self.center) / self.sigma) ** 2)
        value = self.background + peak
        return value * (1.0 + self._rng.gauss(0.0, self.noise)) if self.noise else value

    @attribute(dtype=float, unit="counts")
    async def Counts(self) -> float:
        return self._counts()

    @attribute(dtype=(float,), max_dim_x=SPECTRUM_BINS, unit="counts")
    async def Spectrum(self) -> np.ndarray:
        bins = np.arange(SPECTRUM_BINS, dtype=np.float64)
        line = np.exp(-0.5 * ((bins - SPECTRUM_BINS / 2) / 8.0) ** 2)
        return 1.0 + line * self._counts()

    @attribute(dtype=float, access=AttrWriteType.READ_WRITE, unit="V")
    async def Setpoint(self) -> float:
        return self._setpoint

    @Setpoint.write  # type: ignore[no-redef]
    async def Setpoint(self, value: float) -> None:
        self._setpoint = float(value)

    @attribute(dtype=float, unit="V")
    async def Readback(self) -> float:
        return self._setpoint

    @command
    async def Reset(self) -> None:
        """Simulator only: setpoint back to 0, noise generator re-seeded."""
        self._rng = random.Random(self.seed)
        self._setpoint = 0.0
        self.set_state(DevState.ON)


__all__ = ["EVENT_PERIOD", "SPECTRUM_BINS", "SimTangoCounter", "SimTangoMotor"]
