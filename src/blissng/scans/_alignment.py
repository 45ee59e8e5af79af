"""Alignment helpers on the last scan (or a given one): ``peak``, ``com``, ``cen``, ``fwhm``,
``where``, ``goto_peak``, ``goto_com``, ``goto_cen``.

The numbers come from :mod:`blissng.scans._fit` (which motor and counter, how the peak, centre
of mass and centre are found); ``cen`` returns ``(cen, fwhm)`` as in BLISS, ``fwhm`` the
width alone.
"""

from __future__ import annotations

from typing import Any

from ._bridge import command
from ._context import current_context
from ._fit import AlignmentError, cen_of, com_of, peak_of, scan_motors, scan_xy
from ._motor_commands import move_and_show
from ._scan import Scan


def _scan(scan: Scan | None) -> Scan:
    scan = scan if scan is not None else current_context().get_last_scan()
    if scan is None:
        raise AlignmentError("no scan yet: run a scan first (or pass scan=...)")
    return scan


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
    await move_and_show([(motor, value)])
    return value


@command
async def fwhm(counter: Any = None, axis: Any = None, scan: Scan | None = None) -> float:
    """Full width at half maximum (above the minimum) of the counter's peak in the last scan."""
    _, x, y = await scan_xy(_scan(scan), counter, axis)
    return cen_of(x, y)[1]


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
    for motor in scan_motors(scan).values():
        positions[motor.name] = float(await motor.read_position())
        ranges = {m["name"]: m for m in scan.motors}
        span = ranges.get(motor.name)
        extra = f" (scanned {span['start']:g} .. {span['stop']:g})" if span else ""
        ctx.print(f"{motor.name} = {positions[motor.name]:.4f}{extra}")
    return positions
