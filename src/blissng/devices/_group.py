"""Group moves: several axes checked together, started together, stopped together.

Every target is checked against its axis' limits before any axis moves. Axes of one controller
start through one ``start_all`` call (one hardware command where the controller can); if one
axis fails while the group waits, the others are stopped at once.

A group also moves motors computed from real axes (calculated axes, ``blissng.devices._calc``):
it knows them only through :class:`VirtualController`, the controller that turns their
targets into real-axis targets, so calc builds on group and not the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import anyio

from ._axis import Axis, MotionInProgress
from ._controller import AxisController, Motion
from ._errors import DeviceError


class VirtualController(Protocol):
    """The controller of motors computed from real axes (a slit's gap and offset)."""

    name: str
    reals: Mapping[str, Axis]

    def real_targets(self, targets: Mapping[Any, float]) -> dict[Axis, float]:
        """The real-axis targets of its motors in ``targets`` moving together (their own
        limits checked; the reals' limits are the group's to check)."""
        ...


def _virtual_controller(motor: Any) -> VirtualController | None:
    controller = getattr(motor, "controller", None)
    if callable(getattr(controller, "real_targets", None)) and hasattr(controller, "reals"):
        return controller
    return None


def real_targets(targets: Mapping[Any, float]) -> dict[Axis, float]:
    """Real-axis targets for a mix of real and calculated axes moving together.

    Calculated axes of one controller are solved together (moving a slit's gap and offset at
    once gives one pair of blade targets); every limit is checked, nothing moves.
    """
    reals: dict[Axis, float] = {}
    virtual: dict[VirtualController, dict[Any, float]] = {}
    for motor, target in targets.items():
        if isinstance(motor, Axis):
            reals[motor] = float(target)
        elif (controller := _virtual_controller(motor)) is not None:
            virtual.setdefault(controller, {})[motor] = float(target)
        else:
            name = getattr(motor, "name", repr(motor))
            raise DeviceError(str(name), "is neither a motor axis nor a calculated axis")
    for controller, motors in virtual.items():
        for axis, value in controller.real_targets(motors).items():
            if axis in reals and reals[axis] != value:
                raise DeviceError(
                    controller.name,
                    f"{axis.name} is asked to go to {reals[axis]:g} and, through "
                    f"{controller.name}, to {value:g}; move one or the other",
                )
            reals[axis] = value
    for axis, value in reals.items():
        axis.check_limits(value)
    return reals


def _as_axis(obj: Any) -> Axis:
    if not isinstance(obj, Axis):
        name = getattr(obj, "name", repr(obj))
        raise DeviceError(str(name), "is not a motor axis; a group moves Axis objects only")
    return obj


def _real_axes(members: tuple[Any, ...]) -> tuple[Axis, ...]:
    """The real axes behind members that may be calculated axes."""
    axes: list[Axis] = []
    for member in members:
        controller = None if isinstance(member, Axis) else _virtual_controller(member)
        candidates = list(controller.reals.values()) if controller is not None else [member]
        for axis in candidates:
            if _as_axis(axis) not in axes:
                axes.append(axis)
    return tuple(axes)


class Group:
    """Axes that move as one: ``await Group(m1, m2).move({m1: 1.0, m2: 2.0})``.

    Members may be calculated axes (``Group(s1g, s1o, m1)``): their targets are solved
    together into real-axis targets, and the real axes move as one.
    """

    def __init__(self, *axes: Any) -> None:
        self.members = tuple(axes)
        self.axes = _real_axes(self.members)
        self.name = ",".join(getattr(member, "name", "?") for member in self.members)
        self._moving: tuple[Axis, ...] = ()

    def __repr__(self) -> str:
        return f"<Group {self.name}>"

    @property
    def is_moving(self) -> bool:
        return any(axis.is_moving for axis in self._moving)

    @property
    def positions(self) -> dict[str, float]:
        return {axis.name: axis.position for axis in self.axes}

    async def connect(self) -> None:
        for axis in self.axes:
            await axis.connect()

    async def move(self, targets: Mapping[Any, float], wait: bool = True) -> None:
        """Move each axis of ``targets`` (user positions); all limits are checked first."""
        if not all(type(motor) is Axis for motor in targets):
            targets = real_targets(targets)
        axes = [_as_axis(axis) for axis in targets]
        unknown = [axis.name for axis in axes if axis not in self.axes]
        if unknown:
            raise DeviceError(self.name, f"has no axis {', '.join(unknown)}")
        for axis in axes:
            await axis.connect()
        begun: list[tuple[Axis, MotionInProgress]] = []
        try:
            for axis, target in targets.items():
                begun.append((axis, axis.reserve_move(target)))
        except BaseException:
            for axis, motion in begun:
                axis.release_move(motion)
            raise
        by_controller: dict[AxisController, list[Motion]] = {}
        for axis, motion in begun:
            by_controller.setdefault(axis.controller, []).append(axis.next_leg(motion))
        self._moving = tuple(axes)
        try:
            for controller, motions in by_controller.items():
                await controller.start_all(*motions)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._stop(self._moving)
            raise
        if wait:
            await self.wait_move()

    async def wait_move(self) -> None:
        """Wait for every axis; if one fails, stop the others and raise its error."""
        axes = self._moving
        if not axes:
            return
        errors: list[BaseException] = []

        async def wait_one(axis: Axis, scope: anyio.CancelScope) -> None:
            try:
                await axis.wait_move()
            except Exception as exc:
                errors.append(exc)
                scope.cancel()

        try:
            async with anyio.create_task_group() as tg:
                for axis in axes:
                    tg.start_soon(wait_one, axis, tg.cancel_scope)
        finally:
            if errors or not any(axis.is_moving for axis in axes):
                self._moving = ()
        if errors:
            with anyio.CancelScope(shield=True):
                await self._stop(axes)
            raise errors[0]

    async def stop(self) -> None:
        """Stop every axis of the group together."""
        await self._stop(self.axes)

    async def _stop(self, axes: Iterable[Axis]) -> None:
        by_controller: dict[AxisController, list[Axis]] = {}
        for axis in axes:
            axis.prepare_stop()
            by_controller.setdefault(axis.controller, []).append(axis)
        for controller, members in by_controller.items():
            await controller.stop_all(*members)
        for members in by_controller.values():
            for axis in members:
                await axis.wait_stopped()
