"""The numbers alignment takes from a scan: its x (a motor) and y (a counter), and their
peak, centre of mass, centre and full width at half maximum.

Shared by the alignment commands (``blissng.scans._alignment``: ``peak()`` on the last scan,
``goto_peak()``) and the scan objects' own methods (``scan.peak()``,
``blissng.scans._scan_methods``), so that neither imports the other.

The x axis is a motor of the scan (default: its first), y a counter (default: the one chosen
with ``plotselect``, else the first counter channel), as the scan document maps them
(``blissng.data.axis_channels``, ``counter_channels``): nothing is guessed from channel names.
``cen`` is the middle of the full width at half maximum (above the minimum), interpolated
between points.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from blissng.data import axis_channels, find_channel
from blissng.errors import BlissngError

from ._context import current_context
from ._plot_selection import selected_channels

if TYPE_CHECKING:
    from ._scan import Scan


class AlignmentError(BlissngError, ValueError):
    """No scan to align on, or a scan without a motor or counter to use."""


def scan_motors(scan: Any) -> dict[str, Any]:
    """Motor objects of the scan's chain (or, for a scan read back from Redis, the session's
    objects of those names) by the channel of their positions."""
    chain = getattr(scan, "chain", None)
    if chain is not None:
        objects = {axis.name: axis for node in chain.nodes for axis in getattr(node, "axes", ())}
    else:
        objects = dict(current_context().objects())
    return {
        motor["channel"]: objects[motor["name"]]
        for motor in scan.describe().get("motors", [])
        if motor.get("channel") and motor.get("name") in objects
    }


async def scan_xy(
    scan: Scan, counter: Any = None, axis: Any = None
) -> tuple[Any, np.ndarray, np.ndarray]:
    """(motor object, x positions, y values) of ``scan``."""
    data = await scan.get_data.aio(scan)  # type: ignore[attr-defined]
    document = scan.describe()
    axes = axis_channels(document)
    if not axes:
        raise AlignmentError(f"scan {scan.number} moved no motor: nothing to align")
    x_name = axes[0] if axis is None else _resolve(document, axis, axes, "motor")
    if counter is None:  # plotselect's counter, else the first one
        plot = current_context().plot
        ys = selected_channels(document, plot.selected if plot is not None else [])
        if not ys:
            raise AlignmentError(f"scan {scan.number} has no scalar counter")
        y_name = ys[0]
    else:
        y_name = _resolve(document, counter, list(document["channels"]), "counter")
    x = np.asarray(data[x_name], dtype=float)
    y = np.asarray(data[y_name], dtype=float)
    n = min(len(x), len(y))
    if n == 0:
        raise AlignmentError(f"scan {scan.number} has no point")
    return scan_motors(scan).get(x_name), x[:n], y[:n]


def _resolve(document: dict[str, Any], wanted: Any, among: list[str], what: str) -> str:
    try:
        name = find_channel(document, wanted)
    except KeyError as exc:
        raise AlignmentError(exc.args[0]) from None
    if name not in among:
        raise AlignmentError(f"{name} is not a {what} of this scan")
    return name


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
