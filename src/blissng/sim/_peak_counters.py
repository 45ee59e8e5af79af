"""In-process simulated counters whose values depend on motor positions.

``SimCounterController``: sampling counters, each a gaussian peak over one motor's position
(``center``, ``fwhm``, ``height``) on a ``background``, plus gaussian ``noise`` (standard
deviation, 0 for exact values), so that a scan across the peak looks like a measurement and
``cen``/``peak`` find ``center``. A counter without a motor gives ``background + height``
plus noise. Reading reads the motor's cached position (no I/O): eight counters cost a few µs,
which the step-scan benchmark needs.

``SimScalerController``: an integrating controller (in process): each counter counts
``rate`` per second, peaked like the above, over the count time.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from blissng.devices import (
    Counter,
    IntegratingCounterController,
    Movable,
    SamplingCounter,
    SamplingCounterController,
    SamplingMode,
    TriggerMode,
    check_unique_names,
)

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


class PeakParameters(BaseModel):
    """A gaussian peak over one motor's user position."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    motor: Any = Field(None, description="$motor whose position the value depends on")
    center: float = 0.0
    fwhm: float = Field(1.0, gt=0)
    height: float = 1.0
    background: float = 0.0
    noise: float = Field(0.0, ge=0, description="standard deviation of the added noise")

    @model_validator(mode="after")
    def _motor_is_movable(self) -> Self:
        if self.motor is not None and not isinstance(self.motor, Movable):
            raise ValueError(f"motor must be a motor ($name of an axis), not {self.motor!r}")
        return self


class SimCounterParameters(PeakParameters):
    name: str
    unit: str | None = None
    mode: SamplingMode = SamplingMode.MEAN
    nsamples: int = Field(10, ge=1)


class SimCounterControllerParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    counters: list[SimCounterParameters]
    seed: int | None = Field(None, description="noise seed, for reproducible values")
    sampling_period: float = Field(0.01, gt=0, description="seconds between samples")

    @model_validator(mode="after")
    def _unique(self) -> Self:
        check_unique_names([c.name for c in self.counters], "counter")
        return self


class _Peak:
    """Evaluates one peak; slots and locals keep it cheap (it runs per sample)."""

    __slots__ = ("background", "center", "height", "inv2s2", "motor", "noise")

    def __init__(self, params: PeakParameters) -> None:
        self.motor = params.motor
        self.center = params.center
        sigma = params.fwhm * FWHM_TO_SIGMA
        self.inv2s2 = 1.0 / (2.0 * sigma * sigma)
        self.height = params.height
        self.background = params.background
        self.noise = params.noise

    def value(self, rng: random.Random) -> float:
        if self.motor is None:
            value = self.background + self.height
        else:
            d = self.motor.position - self.center
            value = self.background + self.height * math.exp(-d * d * self.inv2s2)
        if self.noise:
            value += rng.gauss(0.0, self.noise)
        return value


class SimCounterController(SamplingCounterController):
    """Simulated sampling counters over motor positions (see the module docstring)."""

    Parameters = SimCounterControllerParameters

    def __init__(self, name: str, params: SimCounterControllerParameters) -> None:
        super().__init__(name, sampling_period=params.sampling_period)
        self.rng = random.Random(params.seed)
        self._peaks: list[_Peak] = []
        for counter in params.counters:
            self.add_counter(
                SamplingCounter(
                    counter.name, self, mode=counter.mode, unit=counter.unit,
                    nsamples=counter.nsamples,
                )
            )  # fmt: skip
            self._peaks.append(_Peak(counter))
        self.reads = 0  # read_all calls, for tests and benchmarks

    @classmethod
    def from_config(cls, name: str, params: SimCounterControllerParameters, context: Any) -> Self:
        return cls(name, params)

    def peak(self, counter: str) -> _Peak:
        return self._peaks[[c.name for c in self.counters].index(self.child(counter).name)]

    async def read_all(self, counters: Sequence[SamplingCounter]) -> Sequence[float]:
        self.reads += 1
        rng = self.rng
        return [peak.value(rng) for peak in self._peaks]


class SimScalerCounterParameters(PeakParameters):
    name: str
    unit: str | None = "counts"


class SimScalerParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    counters: list[SimScalerCounterParameters]
    seed: int | None = None


class SimScalerController(IntegratingCounterController):
    """In-process scaler: counts = (background + peak) per second x count time (+ noise).

    Software triggering only (no trigger box reaches into the process): each trigger counts
    for the count time on the clock; the counts use the motor positions at the end.
    """

    Parameters = SimScalerParameters
    supported_trigger_modes = frozenset({TriggerMode.SOFTWARE})

    def __init__(self, name: str, params: SimScalerParameters) -> None:
        super().__init__(name)
        self.rng = random.Random(params.seed)
        self._peaks: list[_Peak] = []
        for counter in params.counters:
            self.add_counter(Counter(counter.name, self, unit=counter.unit, dtype="float64"))
            self._peaks.append(_Peak(counter))
        self._exposure = 0.0
        self._ends: list[float] = []  # end time of each triggered point not yet fetched
        self._acquired = 0

    @classmethod
    def from_config(cls, name: str, params: SimScalerParameters, context: Any) -> Self:
        return cls(name, params)

    async def hw_prepare(self, nframes: int, exposure: float, mode: TriggerMode) -> None:
        self._exposure = exposure

    async def hw_start(self) -> None:
        self._ends.clear()
        self._acquired = 0

    async def hw_trigger(self) -> None:
        self._ends.append(time.perf_counter() + self._exposure)

    async def hw_frames(self) -> int:
        now = time.perf_counter()
        return self._acquired + sum(1 for end in self._ends if end <= now)

    async def hw_fetch_counts(self) -> np.ndarray:
        now = time.perf_counter()
        done = [end for end in self._ends if end <= now]
        self._ends = [end for end in self._ends if end > now]
        self._acquired += len(done)
        t = self._exposure
        rows = [[max(p.value(self.rng), 0.0) * t for p in self._peaks] for _ in done]
        return np.array(rows, dtype=np.float64).reshape(len(done), len(self._peaks))

    async def hw_stop(self) -> None:
        self._ends.clear()
