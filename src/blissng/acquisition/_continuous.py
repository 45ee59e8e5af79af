"""Continuous scans: motors moving at constant velocity while a trigger box fires the points.

The chain of an ``fscan`` (BLISS's fscan, ophyd-async's flyers)::

    ContinuousMotionMaster      one iteration per line: motors to the line's run-up, scan
    └── LatchingTriggerMaster   velocity, arm the box, run through the line, wait
        ├── AcquirableSlave(scaler, HARDWARE)   armed once, one point per pulse, read in
        └── AcquirableSlave(mca, HARDWARE)      batches by their reading loops

- :class:`LatchingTriggerMaster` programs a :class:`~blissng.devices.PulseTrain`
  per trigger (per line) on a
  :class:`~blissng.devices.LatchingTriggerSource`, and its reading loop drains the
  latched encoders in batches into ``axis:<motor>`` channels and ``<name>:elapsed_time``.
  It may also be the top of a chain (``ftimescan``: one time train, no motion).
- :class:`ContinuousMotionMaster` moves the axes of each line (:class:`LineMotion`): to the
  run-up position at their own velocity, then through the line at the scan velocity (not
  stored: restored after the line), its child armed in between. Axes whose encoder is not
  latched get an ``axis:<motor>`` channel from here: their position after the move for an
  axis that waits during the line, the requested positions for one that moves.

Pause acts between iterations, so between lines. Cancellation (Ctrl-C) stops the pulses and
the motors at once, concurrently: the trigger box does not keep firing while a motor
decelerates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence

import anyio
import numpy as np

from blissng.devices import Group, LatchingTriggerSource, PulseTrain, ScanAxis

from ._channels import Channel, ChannelSpec
from ._errors import AcquisitionError
from ._masters import stop_axes
from ._node import AcquisitionMaster

log = logging.getLogger(__name__)

#: How long a cancelled line may take to stop its trigger source.
STOP_PULSES_DEADLINE = 2.0
#: After a line's motion, how long its trigger source may take to say it is done.
DONE_AFTER_MOTION = 1.0


@dataclasses.dataclass(frozen=True)
class LatchedAxis:
    """A motor whose encoder the trigger source latches with every pulse, on ``input``."""

    axis: ScanAxis
    input: int

    def to_counts(self, user: float) -> float:
        return self.axis.user_to_dial(user) * self.axis.encoder_steps_per_unit

    def to_user(self, counts: np.ndarray) -> np.ndarray:
        dial = counts / self.axis.encoder_steps_per_unit
        return np.asarray(self.axis.dial_to_user(dial), dtype=np.float64)  # type: ignore[arg-type]


class LatchingTriggerMaster(AcquisitionMaster):
    """A trigger source running one :class:`PulseTrain` per trigger: per line under a
    :class:`ContinuousMotionMaster`, or once at the top of a chain.

    Its hardware-triggered children are prepared once for every point (``npoints``, the sum
    of the trains) and armed before the first train. After each train, ``wait_ready``
    checks that the source emitted every pulse, that no child missed one, and that every
    reading loop (its own and its children's) has read the points so far.
    Channels: ``<name>:elapsed_time`` (each pulse's time since the first train started) and
    ``axis:<motor>`` for each latched motor (the latched encoder, in user units).
    """

    has_reading = True

    def __init__(
        self,
        source: LatchingTriggerSource,
        trains: Sequence[PulseTrain],
        *,
        count_time: float,
        latched: Sequence[LatchedAxis] = (),
        readout_timeout: float = 5.0,
        poll_interval: float = 0.005,
        name: str | None = None,
    ) -> None:
        if not trains:
            raise ValueError(f"{source.name}: a trigger master needs at least one pulse train")
        super().__init__(name or source.name, device=source, npoints=sum(t.npulses for t in trains))
        self.source = source
        self.trains = list(trains)
        self.count_time = float(count_time)
        self.latched = list(latched)
        self.readout_timeout = readout_timeout
        self.poll_interval = poll_interval
        self.ends = np.cumsum([t.npulses for t in self.trains])  # points after each train
        self._elapsed = self.add_channel(
            ChannelSpec(
                f"{self.name}:elapsed_time", "float64", unit="s", device=self.name, role="time"
            )
        )
        self._axes: list[Channel] = [
            self.add_channel(
                ChannelSpec(
                    f"axis:{latched_axis.axis.name}",
                    "float64",
                    unit=getattr(latched_axis.axis, "unit", None),
                    device=latched_axis.axis.name,
                    role="axis",
                )
            )
            for latched_axis in self.latched
        ]
        self._train = 0
        self._offsets: list[float] = []  # per train started: its start since the first's
        self._t0 = 0.0
        self.points_read = 0
        self.done: anyio.Event | None = None

    @property
    def iterations(self) -> int:
        return len(self.trains)  # at the top: one trigger per train

    @property
    def expected_points(self) -> int:
        return self.npoints

    def reset(self) -> None:
        self._train = 0
        self._offsets = []
        self.points_read = 0
        self.done = anyio.Event()

    async def trigger(self) -> None:
        """Program and start the next train (the motion, if any, starts after this)."""
        train = self.trains[self._train]
        try:
            await self.source.prepare_train(train, [a.input for a in self.latched])
            await self.source.start_pulses()
        except Exception as exc:
            raise self.error("trigger", exc) from exc
        started = time.monotonic()
        if not self._offsets:
            self._t0 = started
        self._offsets.append(started - self._t0)
        await self.acquire_children()

    async def wait_ready(self) -> None:
        """The train is over: every pulse emitted, none missed, every point read."""
        index = self._train
        self._train += 1
        train = self.trains[index]
        if self.parent is None:  # at the top of the chain: the train runs now
            limit = train.npulses * train.period + self.readout_timeout
            after, why = "it started", "the trigger box did not finish its pulses"
        else:  # the motion has ended: its last positions were passed, its last times are due
            limit = DONE_AFTER_MOTION + 2 * train.period
            after = "the motion ended"
            why = "the motion did not pass every position (check the encoder and its scale)"
        with anyio.move_on_after(limit) as waited:
            try:
                await self.source.wait_done()
            except Exception as exc:
                raise self.error("wait_ready", exc) from exc
        if waited.cancelled_caught:
            emitted = await self.source.pulses_emitted()
            where = f" of line {index + 1}" if len(self.trains) > 1 else ""
            raise self.error(
                "wait_ready",
                f"emitted {emitted} of the {train.npulses} pulses{where}, {limit:.3g} s after "
                f"{after}: {why}",
            )
        await self._check_missed()
        await self._wait_points(int(self.ends[index]))

    async def _check_missed(self) -> None:
        for child in self.children:
            missed_triggers = getattr(child.device, "missed_triggers", None)
            if not child.is_hardware or missed_triggers is None:
                continue
            try:
                missed = int(await missed_triggers())
            except Exception as exc:
                raise AcquisitionError(child.name, "reading", exc) from exc
            if missed:
                raise AcquisitionError(
                    child.name,
                    "reading",
                    f"missed {missed} trigger pulse(s) (they came while it was still busy with "
                    "the previous point, or not armed): its points no longer match the "
                    "pulses. Give it more time between points (latency_time) or a shorter "
                    "count time",
                )

    async def _wait_points(self, points: int) -> None:
        """Wait (polling: this happens once per line) until every reading loop has
        ``points`` points; fail naming the first one still short."""
        readers: list[tuple[str, Callable[[], int], int]] = [
            (self.name, lambda: self.points_read, points)
        ]
        for child in self.children:
            if child.has_reading:
                frames = getattr(child, "frames_per_trigger", 1)
                readers.append((child.name, _points_read_of(child), points * frames))
        deadline = anyio.current_time() + self.readout_timeout
        for name, got, wanted in readers:
            while got() < wanted:
                if anyio.current_time() >= deadline:
                    raise AcquisitionError(
                        name,
                        "reading",
                        f"got {got()} of {wanted} points {self.readout_timeout:g} s after "
                        f"{self.name} finished its pulses",
                    )
                await anyio.sleep(self.poll_interval)

    async def reading(self) -> None:
        """Drain the latched values in batches: one request per poll, whatever the rate."""
        try:
            while self.points_read < self.npoints:
                try:
                    data = await self.source.read_latched()
                except Exception as exc:
                    raise self.error("reading", exc) from exc
                if not len(data):
                    await anyio.sleep(self.poll_interval)
                    continue
                data = data[: self.npoints - self.points_read]
                index = self.points_read + np.arange(len(data))
                train = np.searchsorted(self.ends, index, side="right")
                offsets = np.asarray(self._offsets)[np.minimum(train, len(self._offsets) - 1)]
                await self._elapsed.emit(offsets + data[:, 0])
                for j, (latched_axis, channel) in enumerate(
                    zip(self.latched, self._axes, strict=True)
                ):
                    await channel.emit(latched_axis.to_user(data[:, 1 + j]))
                self.points_read += len(data)
                await anyio.lowlevel.checkpoint()
        finally:
            if self.done is not None:
                self.done.set()

    async def stop(self) -> None:
        try:
            await self.source.stop()
        except Exception as exc:
            raise self.error("stop", exc) from exc


def _points_read_of(node: object) -> Callable[[], int]:
    return lambda: int(getattr(node, "points_read", 0))


@dataclasses.dataclass(frozen=True)
class LineMotion:
    """One axis in one line of a continuous scan.

    The axis goes to ``start`` (at its own velocity) before the line, then, if ``velocity``
    is not 0, to ``stop`` at ``velocity`` during the line. ``points`` are the positions of the
    line's points: the axis' channel when its encoder is not latched by the trigger source
    (for an axis that does not move in the line, its position after the move is shown).
    """

    axis: ScanAxis
    start: float
    stop: float
    velocity: float
    points: np.ndarray


class ContinuousMotionMaster(AcquisitionMaster):
    """The lines of a continuous scan, one per iteration (see the module's docstring).

    ``lines``: per line, the :class:`LineMotion` of every axis (the same axes in every line).
    ``latched``: names of the axes whose channel comes from the trigger master instead.
    """

    def __init__(
        self,
        lines: Sequence[Sequence[LineMotion]],
        *,
        latched: Sequence[str] = (),
        name: str | None = None,
    ) -> None:
        if not lines or not lines[0]:
            raise ValueError("ContinuousMotionMaster needs at least one line with an axis")
        self.lines = [list(line) for line in lines]
        self.axes = [motion.axis for motion in self.lines[0]]
        npoints = sum(len(line[0].points) for line in self.lines)
        super().__init__(name or "+".join(a.name for a in self.axes), npoints=npoints)
        self._shown = [m.axis for m in self.lines[0] if m.axis.name not in set(latched)]
        self._channels = [
            self.add_channel(
                ChannelSpec(
                    f"axis:{axis.name}",
                    "float64",
                    unit=getattr(axis, "unit", None),
                    device=axis.name,
                    role="axis",
                )
            )
            for axis in self._shown
        ]
        self._line = 0
        self._pending: list[np.ndarray] | None = None
        self._committed: list[list[np.ndarray]] = []

    @property
    def iterations(self) -> int:
        return len(self.lines)

    def reset(self) -> None:
        self._line = 0
        self._pending = None
        self._committed = []

    async def trigger(self) -> None:
        line = self.lines[self._line]
        await self._move([(m.axis, m.start) for m in line])
        self._pending = [
            m.points if m.velocity else np.full(len(m.points), m.axis.position)
            for m in line
            if m.axis in self._shown
        ]
        moving = [m for m in line if m.velocity]
        async with contextlib.AsyncExitStack() as stack:
            for m in moving:
                await self._guard(m.axis, "velocity", stack, m.axis.velocity_override(m.velocity))
            await self.acquire_children()
            await self._run_line(moving)

    async def _guard(
        self,
        axis: ScanAxis,
        phase: str,
        stack: contextlib.AsyncExitStack,
        manager: contextlib.AbstractAsyncContextManager[None],
    ) -> None:
        try:
            await stack.enter_async_context(manager)
        except Exception as exc:
            raise AcquisitionError(axis.name, phase, exc) from exc

    async def _move(self, targets: Sequence[tuple[ScanAxis, float]]) -> None:
        """Move axes together (one controller command where they share a controller)."""
        try:
            if len(targets) == 1:
                axis, target = targets[0]
                await axis.move(target)
            else:
                await Group(*(axis for axis, _ in targets)).move(dict(targets))
        except Exception as exc:
            name = getattr(exc, "device", None) or "+".join(a.name for a, _ in targets)
            raise AcquisitionError(str(name), "move", exc) from exc

    async def _run_line(self, moving: Sequence[LineMotion]) -> None:
        """Through the line; if interrupted, the pulses stop at once (beside the motors)."""
        finished = False

        async def stop_pulses_unless_finished() -> None:
            try:
                await anyio.sleep_forever()
            finally:
                if not finished:
                    with anyio.CancelScope(shield=True) as scope:
                        scope.deadline = anyio.current_time() + STOP_PULSES_DEADLINE
                        await self._stop_children()

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_pulses_unless_finished, name=f"{self.name} stop pulses on abort")
            await self._move([(m.axis, m.stop) for m in moving])
            finished = True
            tg.cancel_scope.cancel()

    async def _stop_children(self) -> None:
        for child in self.children:
            try:
                await child.stop()
            except Exception as exc:  # the chain's cleanup stops it again and reports
                log.warning("%s: could not stop %s at once: %s", self.name, child.name, exc)

    def commit(self) -> None:
        if self._pending is not None:
            self._committed.append(self._pending)
            self._pending = None
            self._line += 1

    async def flush(self) -> None:
        committed, self._committed = self._committed, []
        for j, channel in enumerate(self._channels):
            if committed:
                await channel.emit(np.concatenate([line[j] for line in committed]))

    def discard(self) -> None:
        self._pending = None

    async def stop(self) -> None:
        """Stop the pulses and the motors together."""
        await stop_axes(self.axes, self._stop_children)
