"""A PID regulation loop (a temperature controller's loop, in software).

The loop is a device: it knows its input (a reading), its output (an actuator) and its
setpoint, and computes one step at a time. Running it periodically is the job of whoever owns
background tasks (the server); the loop never starts a task of its own.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable


class RegulationLoop:
    """PID with a setpoint ramp and output limits (anti-windup by clamping the integral)."""

    def __init__(
        self,
        name: str,
        read_input: Callable[[], Awaitable[float]],
        write_output: Callable[[float], Awaitable[None]],
        *,
        kp: float,
        ki: float = 0.0,
        kd: float = 0.0,
        setpoint: float = 0.0,
        ramp_rate: float | None = None,
        output_limits: tuple[float, float] = (0.0, 100.0),
    ) -> None:
        self.name = name
        self._read_input = read_input
        self._write_output = write_output
        self.kp, self.ki, self.kd = kp, ki, kd
        self.ramp_rate = ramp_rate  # units per second; None = jump to the target
        self.output_limits = output_limits
        self.target = setpoint
        self.working_setpoint = setpoint
        self.last_input: float | None = None
        self.last_output = 0.0
        self._integral = 0.0
        self._last_error: float | None = None
        self._last_time: float | None = None
        self.last_step_time: float | None = None  # time.monotonic() of the last step

    @property
    def setpoint(self) -> float:
        return self.target

    @setpoint.setter
    def setpoint(self, value: float) -> None:
        """A new target: the working setpoint ramps to it at ``ramp_rate``."""
        self.target = float(value)
        if self.ramp_rate is None:
            self.working_setpoint = self.target

    @property
    def ramping(self) -> bool:
        return self.working_setpoint != self.target

    async def step(self) -> float:
        """Read the input, update the working setpoint, compute and write the output."""
        now = time.monotonic()
        dt = 0.0 if self._last_time is None else now - self._last_time
        self._last_time = now
        self.last_step_time = now
        if self.ramp_rate is not None and dt > 0:
            delta = self.target - self.working_setpoint
            limit = self.ramp_rate * dt
            self.working_setpoint += max(-limit, min(limit, delta))
        value = await self._read_input()
        self.last_input = value
        error = self.working_setpoint - value
        low, high = self.output_limits
        derivative = 0.0
        if dt > 0:
            if self.ki:
                self._integral += error * dt
                # Anti-windup: the integral alone never asks for more than the limits.
                self._integral = max(low / self.ki, min(high / self.ki, self._integral))
            if self._last_error is not None:
                derivative = (error - self._last_error) / dt
        self._last_error = error
        output = self.kp * error + self.ki * self._integral + self.kd * derivative
        output = max(low, min(high, output))
        await self._write_output(output)
        self.last_output = output
        return output

    def __info__(self) -> str:
        ramp = f" (ramping to {self.target:g})" if self.ramping else ""
        return (
            f"{self.name}: setpoint {self.working_setpoint:g}{ramp}, input {self.last_input}, "
            f"output {self.last_output:.2f}"
        )
