"""Masters: what drives the points of a scan.

- :class:`MotorStepMaster`: moves one or several axes together to the next position of their
  arrays at each point, then triggers its children (the step scans).
- :class:`SoftwareTimerMaster`: triggers its children, lets ``count_time`` elapse, reads them
  (``ct``, ``loopscan``, ``timescan``, and under a motor master in step scans).
- :class:`HardwareTriggerMaster`: programs a :class:`TriggerSource` (the trigger box) for
  ``npoints`` pulses; its hardware-triggered children count them and are read by their own
  reading loops.

Every master makes one point per ``trigger`` call; the top master is triggered by the chain
``iterations`` times.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import anyio
import numpy as np

from blissng.devices import Movable, TriggerSource

from ._channels import ChannelSpec
from ._errors import AcquisitionError
from ._node import AcquisitionMaster, fan_out


class MotorStepMaster(AcquisitionMaster):
    """Step motion: at point ``i`` every axis moves to its ``positions[i]``, all together.

    ``motions`` is ``[(axis, positions), ...]`` with positions of equal length (``npoints``).
    Each axis gets a channel ``"axis:<name>"`` with the position reached (``axis.position``
    after the move). ``stab_time`` is slept after each move (mechanical settling).
    """

    def __init__(
        self,
        motions: Sequence[tuple[Movable, Sequence[float] | np.ndarray]],
        *,
        stab_time: float = 0.0,
        name: str | None = None,
    ) -> None:
        if not motions:
            raise ValueError("MotorStepMaster needs at least one (axis, positions) pair")
        axes = [axis for axis, _ in motions]
        positions = [np.asarray(p, dtype=float).ravel().tolist() for _, p in motions]
        lengths = {len(p) for p in positions}
        if len(lengths) != 1:
            detail = ", ".join(f"{a.name}: {len(p)}" for a, p in zip(axes, positions, strict=True))
            raise ValueError(f"MotorStepMaster: position arrays differ in length ({detail})")
        super().__init__(name or "+".join(a.name for a in axes), npoints=lengths.pop())
        self.axes = axes
        self.positions = positions
        self.stab_time = stab_time
        self._points = list(zip(*positions, strict=True))  # per point, a tuple of targets
        self._channels = [
            self.add_channel(
                ChannelSpec(
                    name=f"axis:{axis.name}",
                    dtype="float64",
                    unit=getattr(axis, "unit", None),
                    device=axis.name,
                    role="axis",
                )
            )
            for axis in axes
        ]
        self._index = 0
        self._pending: list[float] | None = None
        self._committed: list[list[float]] = []

    def reset(self) -> None:
        self._index = 0
        self._pending = None
        self._committed = []

    async def _move(self, targets: Sequence[float]) -> None:
        axes = self.axes
        if len(axes) == 1:
            axis = axes[0]
            try:
                await axis.move(targets[0])
            except Exception as exc:
                raise AcquisitionError(axis.name, "move", exc) from exc
            return
        for axis, target in zip(axes, targets, strict=True):
            try:
                await axis.move(target, wait=False)
            except Exception as exc:
                raise AcquisitionError(axis.name, "move", exc) from exc

        async def wait(axis: Movable) -> None:
            try:
                await axis.wait_move()
            except Exception as exc:
                raise AcquisitionError(axis.name, "move", exc) from exc

        await fan_out([lambda a=axis: wait(a) for axis in axes])  # type: ignore[misc]

    async def trigger(self) -> None:
        await self._move(self._points[self._index])
        if self.stab_time > 0:
            await anyio.sleep(self.stab_time)
        self._pending = [axis.position for axis in self.axes]
        await self.acquire_children()

    def commit(self) -> None:
        pending = self._pending
        if pending is not None:
            self._pending = None
            self._committed.append(pending)
            self._index += 1

    async def flush(self) -> None:
        committed = self._committed
        if not committed:
            return
        self._committed = []
        columns = np.array(committed, dtype=float)  # (n, naxes)
        for j, channel in enumerate(self._channels):
            await channel.emit(columns[:, j])

    def discard(self) -> None:
        self._pending = None  # the same index is moved to again

    def pending_values(self) -> dict[str, np.ndarray]:
        if self._pending is None:
            return {}
        return {c.name: np.asarray(v) for c, v in zip(self._channels, self._pending, strict=True)}

    async def stop(self) -> None:
        await stop_axes(self.axes)


async def stop_axes(axes: Sequence[Movable], *also: Callable[[], Coroutine[Any, Any, Any]]) -> None:
    """Stop every axis (and run ``also``) concurrently; raise the first axis' error, named."""
    errors: list[AcquisitionError] = []

    async def stop_axis(axis: Movable) -> None:
        try:
            await axis.stop()
        except Exception as exc:
            errors.append(AcquisitionError(axis.name, "stop", exc))

    await fan_out([*also, *(functools.partial(stop_axis, axis) for axis in axes)])
    if errors:
        raise errors[0]


class SoftwareTimerMaster(AcquisitionMaster):
    """Counts ``count_time`` per point: triggers children, waits what remains, reads them.

    ``npoints`` 0 runs until stopped (``timescan``). ``sleep_time`` is slept between points.
    Emits ``timer:elapsed_time`` (since the scan started) and ``timer:epoch`` per point.
    """

    def __init__(
        self,
        count_time: float,
        npoints: int = 1,
        *,
        sleep_time: float = 0.0,
        name: str = "timer",
    ) -> None:
        if count_time < 0:
            raise ValueError(f"{name}: count_time must be >= 0, got {count_time}")
        super().__init__(name, npoints=npoints)
        self.count_time = float(count_time)
        self.sleep_time = float(sleep_time)
        self._elapsed = self.add_channel(
            ChannelSpec(f"{name}:elapsed_time", "float64", unit="s", device=name, role="time")
        )
        self._epoch = self.add_channel(
            ChannelSpec(f"{name}:epoch", "float64", unit="s", device=name, role="time")
        )
        self._t0 = 0.0
        self._pending: tuple[float, float] | None = None
        self._committed: list[tuple[float, float]] = []
        self._counted = 0

    def reset(self) -> None:
        self._t0 = time.perf_counter()
        self._pending = None
        self._committed = []
        self._counted = 0

    async def start(self) -> None:
        if self._counted == 0:
            self._t0 = time.perf_counter()

    async def trigger(self) -> None:
        if self.sleep_time > 0 and self._counted > 0:
            await anyio.sleep(self.sleep_time)
        t0 = time.perf_counter()
        epoch = time.time()
        if self.count_time > 0:
            until = t0 + self.count_time
            await self.acquire_children(until)
            remaining = until - time.perf_counter()
            if remaining > 0:  # no software child counted the time
                await anyio.sleep(remaining)
        else:
            await self.acquire_children()
        self._pending = (t0 - self._t0, epoch)

    def commit(self) -> None:
        pending = self._pending
        if pending is not None:
            self._pending = None
            self._committed.append(pending)
            self._counted += 1

    async def flush(self) -> None:
        committed = self._committed
        if not committed:
            return
        self._committed = []
        columns = np.array(committed, dtype=float)  # (n, 2)
        await self._elapsed.emit(columns[:, 0])
        await self._epoch.emit(columns[:, 1])

    def discard(self) -> None:
        self._pending = None

    def pending_values(self) -> dict[str, np.ndarray]:
        if self._pending is None:
            return {}
        return {
            self._elapsed.name: np.asarray(self._pending[0]),
            self._epoch.name: np.asarray(self._pending[1]),
        }


class HardwareTriggerMaster(AcquisitionMaster):
    """A trigger source making ``npoints`` pulses of ``width`` every ``period`` seconds.

    Its children are hardware-triggered (``AcquirableSlave(dev, trigger_type=HARDWARE)``):
    they are armed before the pulses start (deepest first) and their reading loops collect
    the points. ``wait_ready`` returns once the source is done and every child has read all
    its points, or fails naming the child that is short after ``readout_timeout``.
    The children's count time defaults to ``count_time`` (default: the pulse width).
    """

    def __init__(
        self,
        source: TriggerSource,
        npoints: int,
        period: float,
        *,
        width: float | None = None,
        count_time: float | None = None,
        readout_timeout: float = 5.0,
        name: str | None = None,
    ) -> None:
        if npoints < 1:
            raise ValueError(f"{source.name}: a hardware trigger master needs npoints >= 1")
        if period <= 0:
            raise ValueError(f"{source.name}: period must be > 0, got {period}")
        super().__init__(name or source.name, device=source, npoints=npoints)
        self.source = source
        self.period = float(period)
        self.width = float(width) if width is not None else self.period / 2
        self.count_time = float(count_time) if count_time is not None else self.width
        self.readout_timeout = readout_timeout

    @property
    def iterations(self) -> int:
        return 1  # one trigger makes all the pulses

    async def prepare(self) -> None:
        try:
            await self.source.prepare_pulses(self.npoints, self.period, self.width)
        except Exception as exc:
            raise self.error("prepare", exc) from exc

    async def trigger(self) -> None:
        try:
            await self.source.start_pulses()
        except Exception as exc:
            raise self.error("trigger", exc) from exc
        await self.acquire_children()  # software children, if any, count once

    async def wait_ready(self) -> None:
        try:
            await self.source.wait_done()
        except Exception as exc:
            raise self.error("wait_ready", exc) from exc
        await self.wait_readings(self.readout_timeout)

    async def stop(self) -> None:
        try:
            await self.source.stop()
        except Exception as exc:
            raise self.error("stop", exc) from exc
