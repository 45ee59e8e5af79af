"""A gaussian peak fit with numpy alone (Levenberg-Marquardt on height, centre, sigma and a
constant background). Small on purpose: the demo workflow must not pull scipy into the
``workflows`` extra."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass(frozen=True)
class GaussianFit:
    position: float
    fwhm: float
    sigma: float
    height: float  # above the background
    background: float
    residual_rms: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _model(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    height, centre, sigma, background = p
    return height * np.exp(-0.5 * ((x - centre) / sigma) ** 2) + background


def _jacobian(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    height, centre, sigma, _ = p
    u = (x - centre) / sigma
    g = np.exp(-0.5 * u * u)
    return np.stack(
        [g, height * g * u / sigma, height * g * u * u / sigma, np.ones_like(x)], axis=1
    )


def initial_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Background from the lowest decile, centre at the maximum, sigma from the area."""
    background = float(np.percentile(y, 10))
    top = int(np.argmax(y))
    height = float(y[top] - background)
    order = np.argsort(x)
    xs, ys = x[order], np.clip(y[order] - background, 0, None)
    area = float(np.sum(0.5 * (ys[1:] + ys[:-1]) * np.diff(xs))) if len(xs) > 1 else 0.0
    sigma = area / (height * math.sqrt(2 * math.pi)) if height > 0 else 0.0
    span = float(np.ptp(x)) or 1.0
    if not (0 < sigma < span):
        sigma = span / 10
    return np.array([height, float(x[top]), sigma, background])


def fit_gaussian(x: Any, y: Any, iterations: int = 100) -> GaussianFit:
    """Fit ``y = height * exp(-(x - position)^2 / (2 sigma^2)) + background``."""
    xa = np.asarray(x, dtype=float).ravel()
    ya = np.asarray(y, dtype=float).ravel()
    if xa.shape != ya.shape:
        raise ValueError(f"x and y differ in length ({xa.size} and {ya.size} points)")
    finite = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[finite], ya[finite]
    if xa.size < 5:
        raise ValueError(f"a gaussian fit needs at least 5 points, got {xa.size}")
    p = initial_guess(xa, ya)
    damping = 1e-3
    cost = float(np.sum((ya - _model(p, xa)) ** 2))
    for _ in range(iterations):
        jac = _jacobian(p, xa)
        residual = ya - _model(p, xa)
        jtj = jac.T @ jac
        step = np.linalg.solve(jtj + damping * np.diag(np.diag(jtj) + 1e-12), jac.T @ residual)
        trial = p + step
        trial[2] = abs(trial[2]) or p[2]
        trial_cost = float(np.sum((ya - _model(trial, xa)) ** 2))
        if trial_cost < cost:
            converged = cost - trial_cost < 1e-12 * max(cost, 1e-300)
            p, cost, damping = trial, trial_cost, damping / 3
            if converged:
                break
        else:
            damping *= 4
            if damping > 1e12:
                break
    height, centre, sigma, background = (float(v) for v in p)
    sigma = abs(sigma)
    return GaussianFit(
        position=centre,
        fwhm=sigma * FWHM_PER_SIGMA,
        sigma=sigma,
        height=height,
        background=background,
        residual_rms=math.sqrt(cost / xa.size),
    )
