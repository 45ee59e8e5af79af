"""Alignment helpers on the last scan (or a given one): ``peak``, ``com``, ``cen``, ``where``,
``goto_peak``, ``goto_com``, ``goto_cen``.

The x axis is a motor of the scan (default: its first), y a counter (default: the first
counter channel). ``cen`` is the middle of the full width at half maximum (above the
minimum), interpolated between points; it returns ``(cen, fwhm)`` as in BLISS.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .bridge import command
from .context import current_context
from .motor_commands import _umove
from .scan import Scan, resolve_channel


class AlignmentError(ValueError):
    """No scan to align on, or a scan without a motor or counter to use."""


def _scan(scan: Scan | None) -> Scan:
    scan = scan if scan is not None else current_context().get_last_scan()
    if scan is None:
        raise AlignmentError("no scan yet: run a scan first (or pass scan=...)")
    return scan


def _motors_of(scan: Scan) -> dict[str, Any]:
    """Motor objects of the scan's chain by channel name (``axis:m1`` -> m1)."""
    motors = {}
    for node in scan.chain.nodes:
        for axis in getattr(node, "axes", ()):
            motors[f"axis:{axis.name}"] = axis
    return motors


async def scan_xy(
    scan: Scan, counter: Any = None, axis: Any = None
) -> tuple[Any, np.ndarray, np.ndarray]:
    """(motor object, x positions, y values) of ``scan``."""
    data = await scan.get_data.aio(scan)  # type: ignore[attr-defined]
    names = list(data)
    motors = _motors_of(scan)
    axes = [n for n in names if n.startswith("axis:")]
    if not axes:
        raise AlignmentError(f"scan {scan.number} moved no motor: nothing to align")
    x_name = axes[0] if axis is None else resolve_channel(axes, axis)
    if counter is None:
        ys = [
            n
            for n in names
            if not n.startswith("axis:")
            and not n.endswith((":elapsed_time", ":epoch"))
            and data[n].ndim == 1
        ]
        if not ys:
            raise AlignmentError(f"scan {scan.number} has no scalar counter")
        y_name = ys[0]
    else:
        y_name = resolve_channel(names, counter)
    x = np.asarray(data[x_name], dtype=float)
    y = np.asarray(data[y_name], dtype=float)
    n = min(len(x), len(y))
    if n == 0:
        raise AlignmentError(f"scan {scan.number} has no point")
    return motors.get(x_name), x[:n], y[:n]


def peak_of(x: np.ndarray, y: np.ndarray) -> float:
    return float(x[int(np.argmax(y))])


def com_of(x: np.ndarray, y: np.ndarray) -> float:
    weights = y - y.min()
    total = weights.sum()
    if total == 0:
        return float(x.mean())
    return float((x * weights).sum() / total)


def cen_of(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Centre and full width at half maximum (above the minimum), interpolated."""
    top = int(np.argmax(y))
    half = y.min() + (y[top] - y.min()) / 2
    if y[top] == y.min():
        return float(x[top]), 0.0

    def crossing(i: int, j: int) -> float:  # between points i (above) and j (below)
        if y[i] == y[j]:
            return float(x[i])
        return float(x[j] + (half - y[j]) * (x[i] - x[j]) / (y[i] - y[j]))

    left = float(x[0])
    for i in range(top, 0, -1):
        if y[i - 1] < half:
            left = crossing(i, i - 1)
            break
    right = float(x[-1])
    for i in range(top, len(y) - 1):
        if y[i + 1] < half:
            right = crossing(i, i + 1)
            break
    return (left + right) / 2, abs(right - left)


@command
async def peak(counter: Any = None, axis: Any = None, scan: Scan | None = None) -> float:
    """Motor position of the counter's maximum in the last scan."""
    _, x, y = await scan_xy(_scan(scan), counter, axis)
    return peak_of(x, y)


@command
async def com(counter: Any = None, axis: Any = None, scan: Scan | None = None) -> float:
    """Centre of mass of the counter (above its minimum) in the last scan."""
    _, x, y = await scan_xy(_scan(scan), counter, axis)
    return com_of(x, y)


@command
async def cen(
    counter: Any = None, axis: Any = None, scan: Scan | None = None
) -> tuple[float, float]:
    """``(centre, fwhm)`` of the counter's peak in the last scan."""
    _, x, y = await scan_xy(_scan(scan), counter, axis)
    return cen_of(x, y)


async def _goto(value: float, counter: Any, axis: Any, scan: Scan | None) -> float:
    motor, _, _ = await scan_xy(_scan(scan), counter, axis)
    if motor is None:
        raise AlignmentError("the scan's motor object is not known; move it with umv()")
    await _umove([(motor, value)])
    return value


@command
async def goto_peak(counter: Any = None, axis: Any = None, scan: Scan | None = None) -> float:
    """Move the scan's motor to the counter's maximum."""
    _, x, y = await scan_xy(_scan(scan), counter, axis)
    return await _goto(peak_of(x, y), counter, axis, scan)


@command
async def goto_com(counter: Any = None, axis: Any = None, scan: Scan | None = None) -> float:
    """Move the scan's motor to the counter's centre of mass."""
    _, x, y = await scan_xy(_scan(scan), counter, axis)
    return await _goto(com_of(x, y), counter, axis, scan)


@command
async def goto_cen(counter: Any = None, axis: Any = None, scan: Scan | None = None) -> float:
    """Move the scan's motor to the centre of the counter's peak (FWHM)."""
    _, x, y = await scan_xy(_scan(scan), counter, axis)
    return await _goto(cen_of(x, y)[0], counter, axis, scan)


@command
async def where(scan: Scan | None = None) -> dict[str, float]:
    """Where the last scan's motors are now (and the scan's range)."""
    scan = _scan(scan)
    ctx = current_context()
    positions: dict[str, float] = {}
    for motor in _motors_of(scan).values():
        positions[motor.name] = float(await motor.read_position())
        ranges = {m["name"]: m for m in scan.motors}
        span = ranges.get(motor.name)
        extra = f" (scanned {span['start']:g} .. {span['stop']:g})" if span else ""
        ctx.print(f"{motor.name} = {positions[motor.name]:.4f}{extra}")
    return positions
