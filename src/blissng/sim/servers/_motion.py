"""Trapezoidal motion profiles, evaluated from the clock (no task ticks while a motor moves).

A motion is a list of phases of constant acceleration; position is monotonic along a motion,
so the instant a limit switch is crossed is found by bisection.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Phase:
    t0: float
    p0: float
    v0: float
    a: float
    duration: float

    def at(self, t: float) -> tuple[float, float]:
        dt = min(max(t - self.t0, 0.0), self.duration)
        return self.p0 + self.v0 * dt + 0.5 * self.a * dt * dt, self.v0 + self.a * dt

    @property
    def t1(self) -> float:
        return self.t0 + self.duration


@dataclasses.dataclass(frozen=True)
class Motion:
    phases: tuple[Phase, ...]
    start: float
    end: float  # time the motion ends (possibly cut short by a limit switch)
    final: float  # position at the end
    limit: int = 0  # +1/-1 if it ends on a limit switch

    def at(self, t: float) -> tuple[float, float]:
        """(position, velocity) at time t."""
        if t >= self.end:
            return self.final, 0.0
        for phase in self.phases:
            if t < phase.t1:
                return phase.at(t)
        return self.phases[-1].at(t)


def _phases_from(t0: float, p0: float, v0: float, target: float, vmax: float, acc: float):
    """Phases from (p0, v0) to rest at target, v0 in the direction of target (or 0)."""
    direction = 1.0 if target >= p0 else -1.0
    distance = abs(target - p0)
    v = abs(v0)
    phases: list[Phase] = []
    if distance == 0 and v == 0:
        return phases
    # accelerate to vpeak then decelerate: d = (vp^2 - v^2)/2a + vp^2/2a
    vpeak = math.sqrt(max(acc * distance + v * v / 2.0, 0.0))
    if vpeak > vmax:
        t_acc = max(vmax - v, 0.0) / acc
        d_acc = (vmax * vmax - v * v) / (2 * acc)
        d_dec = vmax * vmax / (2 * acc)
        t_flat = max(distance - d_acc - d_dec, 0.0) / vmax
        t = t0
        p = p0
        if t_acc > 0:
            phases.append(Phase(t, p, direction * v, direction * acc, t_acc))
            p += direction * d_acc
            t += t_acc
        if t_flat > 0:
            phases.append(Phase(t, p, direction * vmax, 0.0, t_flat))
            p += direction * vmax * t_flat
            t += t_flat
        phases.append(Phase(t, p, direction * vmax, -direction * acc, vmax / acc))
    else:
        t_acc = max(vpeak - v, 0.0) / acc
        d_acc = (vpeak * vpeak - v * v) / (2 * acc)
        phases.append(Phase(t0, p0, direction * v, direction * acc, t_acc))
        phases.append(
            Phase(
                t0 + t_acc, p0 + direction * d_acc, direction * vpeak, -direction * acc, vpeak / acc
            )
        )
    return phases


def _cut_at_limits(phases: list[Phase], start: float, low: float, high: float) -> Motion:
    if not phases:
        return Motion((), start, start, math.nan)
    end = phases[-1].t1
    final = phases[-1].at(end)[0]
    first = phases[0].p0
    for bound, sign in ((high, 1), (low, -1)):
        crosses = final > bound if sign > 0 else final < bound
        if not crosses or (first > bound if sign > 0 else first < bound):
            continue
        lo, hi = start, end
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            p = _eval(phases, mid)
            if (p >= bound) if sign > 0 else (p <= bound):
                hi = mid
            else:
                lo = mid
        return Motion(tuple(phases), start, hi, bound, sign)
    return Motion(tuple(phases), start, end, final)


def _eval(phases: list[Phase], t: float) -> float:
    for phase in phases:
        if t < phase.t1:
            return phase.at(t)[0]
    return phases[-1].at(t)[0]


def move(
    t0: float, p0: float, target: float, vmax: float, acc: float, low: float, high: float
) -> Motion:
    """A move from rest at p0 to target, stopped by the limit switches low/high."""
    if target == p0:
        return Motion((), t0, t0, p0)
    return _cut_at_limits(_phases_from(t0, p0, 0.0, target, vmax, acc), t0, low, high)


def stop(motion: Motion, t: float, acc: float | None, low: float, high: float) -> Motion:
    """Decelerate (``acc``) or stop at once (``acc=None``) a motion at time t."""
    p, v = motion.at(t)
    if v == 0.0 or acc is None or t >= motion.end:
        return Motion((), t, t, p)
    duration = abs(v) / acc
    phase = Phase(t, p, v, -math.copysign(acc, v), duration)
    return _cut_at_limits([phase], t, low, high)


# -- vectorised evaluation (the trigger box and the detectors work on batches of pulses) --------


def positions(motion: Motion, times: np.ndarray) -> np.ndarray:
    """Positions at each of ``times`` (any shape): ``motion.at`` for many instants at once."""
    t = np.asarray(times, dtype=np.float64)
    out = np.full(t.shape, motion.final)
    pending = t < motion.end
    for phase in motion.phases:
        if not pending.any():
            break
        selected = pending & (t < phase.t1)
        if selected.any():
            dt = np.clip(t[selected] - phase.t0, 0.0, phase.duration)
            out[selected] = phase.p0 + phase.v0 * dt + 0.5 * phase.a * dt * dt
            pending &= ~selected
    if pending.any() and motion.phases:  # within a limit-cut motion's last phase
        last = motion.phases[-1]
        dt = np.clip(t[pending] - last.t0, 0.0, last.duration)
        out[pending] = last.p0 + last.v0 * dt + 0.5 * last.a * dt * dt
    return out


def crossing_times(motion: Motion, targets: np.ndarray, after: float) -> np.ndarray:
    """The first instant from ``after`` on at which the motion passes each of ``targets``
    (NaN for a target it does not reach). A motion is monotonic, so each target is passed
    at most once; the time is solved from each phase's quadratic, not searched."""
    x = np.asarray(targets, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    if not motion.phases or after >= motion.end:
        return out
    for phase in motion.phases:
        begin = max(phase.t0, after)
        end = min(phase.t1, motion.end)
        if end <= begin:
            continue
        p_begin = phase.at(begin)[0]
        p_end = phase.at(end)[0]
        # closed at both ends, with a margin for rounding: a target exactly where one phase
        # ends and the next begins must not fall between them (each is solved once)
        margin = 1e-9 * max(1.0, abs(p_begin), abs(p_end))
        low, high = min(p_begin, p_end) - margin, max(p_begin, p_end) + margin
        inside = np.isnan(out) & (x >= low) & (x <= high)
        if not inside.any():
            continue
        d = x[inside] - phase.p0
        v0, a = phase.v0, phase.a
        if a == 0.0:
            dt = d / v0
        else:
            # the root nearest to the phase's start, in a form that keeps its precision when
            # v0 is large (no cancellation): dt = 2d / (v0 + sign * sqrt(v0^2 + 2ad))
            root = np.sqrt(np.maximum(v0 * v0 + 2.0 * a * d, 0.0))
            sign = math.copysign(1.0, v0) if v0 != 0.0 else math.copysign(1.0, a)
            denominator = v0 + sign * root
            with np.errstate(divide="ignore", invalid="ignore"):
                dt = np.where(denominator != 0.0, 2.0 * d / denominator, 0.0)
        out[inside] = np.clip(phase.t0 + dt, begin, end)
    return out
