"""Simulated signals that depend on where the motors are: a gaussian peak with noise."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np

from blissng.sim.servers._spec import PeakSpec

Positions = Callable[[float], dict[int, float]]


def peak_rate(peak: PeakSpec, positions: dict[int, float]) -> float:
    """Counts per second without noise at these axis positions (steps)."""
    value = 1.0
    for axis, (center, width) in peak.axes.items():
        x = positions.get(int(axis), 0.0)
        value *= math.exp(-0.5 * ((x - center) / width) ** 2)
    return peak.background + peak.height * value


def peak_rates(peak: PeakSpec, positions: dict[int, np.ndarray]) -> np.ndarray:
    """:func:`peak_rate` for arrays of positions (all of one shape)."""
    shape = np.shape(next(iter(positions.values()))) if positions else ()
    exponent = np.zeros(shape)
    for axis, (center, width) in peak.axes.items():
        x = positions.get(int(axis), np.zeros(shape))
        exponent = exponent - 0.5 * ((x - center) / width) ** 2
    return peak.background + peak.height * np.exp(exponent)


def noisy(value: float, noise: float, rng: random.Random) -> float:
    return value * (1.0 + noise * rng.gauss(0.0, 1.0)) if noise else value
