"""Pause conditions over counters: ``counter_below(machine_current, 10)`` pauses a scan while
the beam is lost and resumes it when it is back (the interrupted point is repeated, no index
appears twice in the data; see ``blissng.acquisition.PauseCondition``).

The counter is counted on its own (``controller.count``) between points, so it must belong to
a controller that the scan does not count itself (a machine-current monitor, not a detector
of the scan): scans refuse the combination with a message.
"""

from __future__ import annotations

from typing import Any

from blissng.acquisition import PauseCondition

from ._counter_selection import counter_controller


class CounterCondition(PauseCondition):
    """A :class:`PauseCondition` reading a counter; ``controller`` is the one it counts."""

    controller: Any = None


def counter_below(
    counter: Any,
    threshold: float,
    *,
    count_time: float = 0.0,
    poll_interval: float = 0.5,
    name: str | None = None,
) -> CounterCondition:
    """Hold the scan while ``counter`` reads below ``threshold``."""
    controller = counter_controller(counter)
    if controller is None or not hasattr(controller, "count"):
        raise TypeError(
            f"{getattr(counter, 'name', counter)!r} cannot be read on its own: give a counter "
            "of a counter controller"
        )

    async def read() -> float:
        values = await controller.count(count_time)
        return float(values[counter.name])

    label = name or f"{counter.name} < {threshold:g}"
    base = PauseCondition.below(label, read, threshold, poll_interval=poll_interval)
    condition = CounterCondition(label, base.holds, poll_interval=poll_interval)
    condition.controller = controller
    return condition
