"""A simulated heater with a thermometer: first-order thermal model, evaluated lazily.

Temperature relaxes towards ``ambient + gain * power`` with time constant ``tau``. The model
is solved exactly between two calls (constant power in between), so it needs no task of its
own and is correct whatever the polling rate.
"""

from __future__ import annotations

import math
import random
import time


class SimHeater:
    """``await read_temperature()``, ``await set_power(percent)``: what a regulation loop needs."""

    def __init__(
        self,
        name: str,
        *,
        ambient: float = 20.0,
        gain: float = 1.0,
        tau: float = 2.0,
        noise: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.name = name
        self.ambient = ambient
        self.gain = gain  # kelvin per percent of power at equilibrium
        self.tau = tau
        self.noise = noise
        self.power = 0.0
        self._temperature = ambient
        self._when = time.monotonic()
        self._random = random.Random(seed)

    def _advance(self) -> float:
        now = time.monotonic()
        equilibrium = self.ambient + self.gain * self.power
        decay = math.exp(-(now - self._when) / self.tau)
        self._temperature = equilibrium + (self._temperature - equilibrium) * decay
        self._when = now
        return self._temperature

    async def read_temperature(self) -> float:
        value = self._advance()
        return value + (self._random.gauss(0.0, self.noise) if self.noise else 0.0)

    async def set_power(self, percent: float) -> None:
        self._advance()  # the old power applied until now
        self.power = min(100.0, max(0.0, percent))

    def __info__(self) -> str:
        return f"{self.name}: {self._advance():.3f} K-ish at {self.power:.1f} % power"
