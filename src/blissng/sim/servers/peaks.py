"""Simulated signals that depend on where the motors are: a gaussian peak with noise."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from blissng.sim.servers.spec import PeakSpec

Positions = Callable[[float], dict[int, float]]


def peak_rate(peak: PeakSpec, positions: dict[int, float]) -> float:
    """Counts per second without noise at these axis positions (steps)."""
    value = 1.0
    for axis, (center, width) in peak.axes.items():
        x = positions.get(int(axis), 0.0)
        value *= math.exp(-0.5 * ((x - center) / width) ** 2)
    return peak.background + peak.height * value


def integrate(rate: Callable[[float], float], t0: float, t1: float, samples: int = 11) -> float:
    """Integral of ``rate(t)`` over [t0, t1] (trapezoid rule on ``samples`` points)."""
    if t1 <= t0:
        return 0.0
    step = (t1 - t0) / (samples - 1)
    values = [rate(t0 + i * step) for i in range(samples)]
    return step * (sum(values) - 0.5 * (values[0] + values[-1]))


def noisy(value: float, noise: float, rng: random.Random) -> float:
    return value * (1.0 + noise * rng.gauss(0.0, 1.0)) if noise else value
