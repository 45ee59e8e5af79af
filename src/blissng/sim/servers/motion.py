"""Trapezoidal motion profiles, evaluated from the clock (no task ticks while a motor moves).

A motion is a list of phases of constant acceleration; position is monotonic along a motion,
so the instant a limit switch is crossed is found by bisection.
"""

from __future__ import annotations

import dataclasses
import math


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
