"""Calculated motors: virtual axes computed from real ones (a slit's gap and offset).

A :class:`CalcController` holds real axes under *tags* (``low``, ``high``) and calculated axes
under tags (``gap``, ``offset``), and implements two pure functions: ``calc_from_real`` and
``calc_to_real``. Moving a calculated axis keeps the other calculated axes where they are,
computes the real targets and moves the reals as one :class:`~blissng.devices.Group`
(every real limit checked before anything moves).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ._axis import Axis, AxisState
from ._controller import check_unique_names
from ._errors import AxisBusyError, DeviceError, LimitError, UnknownDeviceError
from ._group import Group

_STATE_ORDER = (
    AxisState.FAULT,
    AxisState.DISABLED,
    AxisState.MOVING,
    AxisState.LIMPOS,
    AxisState.LIMNEG,
    AxisState.READY,
)


class CalcAxisParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    tag: str
    unit: str | None = None
    low_limit: float | None = None
    high_limit: float | None = None


class CalcAxis:
    """A calculated axis. Implements :class:`blissng.devices.Movable`."""

    def __init__(self, controller: CalcController, params: CalcAxisParameters) -> None:
        self.name = params.name
        self.tag = params.tag
        self.unit = params.unit
        self.controller = controller
        self.low_limit = params.low_limit
        self.high_limit = params.high_limit

    def __repr__(self) -> str:
        return f"<CalcAxis {self.name} ({self.tag} of {self.controller.name})>"

    @property
    def position(self) -> float:
        return self.controller.calc_positions()[self.tag]

    @property
    def state(self) -> AxisState:
        states = {axis.state for axis in self.controller.reals.values()}
        return next(state for state in _STATE_ORDER if state in states or state is AxisState.READY)

    @property
    def is_moving(self) -> bool:
        return self.controller.group.is_moving

    @property
    def limits(self) -> tuple[float, float]:
        low = -math.inf if self.low_limit is None else self.low_limit
        high = math.inf if self.high_limit is None else self.high_limit
        return (low, high)

    async def connect(self) -> None:
        await self.controller.connect()

    async def read_position(self) -> float:
        for axis in self.controller.reals.values():
            await axis.read_position()
        return self.position

    def check_limits(self, target: float) -> None:
        """LimitError if ``target`` is outside this axis' software limits."""
        low, high = self.limits
        if not low <= target <= high:
            raise LimitError(
                self.name,
                f"move to {target:g} refused: outside the software limits [{low:g}, {high:g}]; "
                "nothing moved",
            )

    def real_targets(
        self, target: float, calcs: dict[str, float] | None = None
    ) -> dict[Axis, float]:
        """The real positions a move to ``target`` goes to (the other calculated axes staying
        at ``calcs``, default where they are); limits checked, no I/O."""
        self.check_limits(target)
        controller = self.controller
        calcs = dict(calcs) if calcs is not None else controller.calc_positions()
        calcs[self.tag] = float(target)
        reals = controller.calc_to_real(calcs)
        targets = {controller.reals[tag]: value for tag, value in reals.items()}
        for axis, value in targets.items():
            try:
                axis.check_limits(value)
            except LimitError as exc:
                raise LimitError(
                    self.name, f"move to {target:g} refused: real motor {exc}"
                ) from None
        return targets

    async def move(self, target: float, wait: bool = True) -> None:
        """Move; if a sibling's move (started by this controller) still runs, the two are
        merged: the reals are redirected to where both calculated targets lead (so a scan may
        start ``s1g`` and ``s1o`` one after the other with ``wait=False``)."""
        controller = self.controller
        await controller.connect()
        moving = [axis.name for axis in controller.reals.values() if axis.is_moving]
        if not moving:
            await controller._start(self, float(target), None, wait)
            return
        pending = controller._pending_calcs()
        if pending is None:
            raise AxisBusyError(
                self.name,
                f"{', '.join(moving)} of {controller.name} still moving (not moved through "
                f"{controller.name}); stop or wait for them first",
            )
        await controller._start(self, float(target), pending, wait)

    async def move_relative(self, delta: float, wait: bool = True) -> None:
        await self.move(self.position + float(delta), wait=wait)

    rmove = move_relative

    async def wait_move(self) -> None:
        await self.controller.group.wait_move()

    async def stop(self) -> None:
        await self.controller.group.stop()

    def on_position(self, callback: Callable[[float], Any]) -> Callable[[], None]:
        """``callback(position)`` whenever one of the reals moves."""
        unsubscribers = [
            axis.on_position(lambda _value: callback(self.position))
            for axis in self.controller.reals.values()
        ]

        def unsubscribe() -> None:
            for unsub in unsubscribers:
                unsub()

        return unsubscribe

    def __info__(self) -> str:
        reals = ", ".join(f"{t}={a.name} {a.position:g}" for t, a in self.controller.reals.items())
        return (
            f"calculated axis {self.name} ({self.tag} of {self.controller.name})\n"
            f"  position {self.position:g} {self.unit or ''}\n  reals    {reals}"
        )


class CalcControllerParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    axes: list[CalcAxisParameters] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_axes(self) -> Self:
        check_unique_names([axis.name for axis in self.axes], "calculated axis")
        return self


class CalcController:
    """Base of calculated-motor controllers: subclasses give the two conversions."""

    real_tags: ClassVar[tuple[str, ...]] = ()
    calc_tags: ClassVar[tuple[str, ...]] = ()
    Parameters: ClassVar[type[CalcControllerParameters]] = CalcControllerParameters

    def __init__(
        self, name: str, reals: Mapping[str, Axis], axes: list[CalcAxisParameters]
    ) -> None:
        self.name = name
        for tag, axis in reals.items():
            if not isinstance(axis, Axis):
                raise DeviceError(name, f"real motor {tag!r} must be an Axis, not {axis!r}")
        missing = set(self.real_tags) - set(reals)
        if missing:
            raise DeviceError(name, f"needs real motors for {', '.join(sorted(missing))}")
        self.reals = dict(reals)
        self.group = Group(*self.reals.values())
        self._motion_calcs: dict[str, float] | None = None  # targets of the motion we started
        self._motions: dict[Axis, Any] = {}
        self.axes: dict[str, CalcAxis] = {}
        for params in axes:
            if self.calc_tags and params.tag not in self.calc_tags:
                raise DeviceError(
                    name,
                    f"calculated axis {params.name!r} has tag {params.tag!r}; "
                    f"expected one of {', '.join(self.calc_tags)}",
                )
            self.axes[params.name] = CalcAxis(self, params)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} axes={list(self.axes)}>"

    def child(self, name: str) -> CalcAxis:
        try:
            return self.axes[name]
        except KeyError:
            known = ", ".join(self.axes) or "none"
            raise UnknownDeviceError(
                self.name, f"has no calculated axis {name!r} (its axes: {known})"
            ) from None

    def axis(self, tag: str) -> CalcAxis:
        for axis in self.axes.values():
            if axis.tag == tag:
                return axis
        raise UnknownDeviceError(self.name, f"has no calculated axis tagged {tag!r}")

    async def connect(self) -> None:
        for axis in self.reals.values():
            await axis.connect()

    async def _start(
        self, axis: CalcAxis, target: float, calcs: dict[str, float] | None, wait: bool
    ) -> None:
        """Start (or redirect, when ``calcs`` are the running motion's) a move of ``axis``."""
        base = calcs if calcs is not None else self.calc_positions()
        targets = axis.real_targets(target, base)  # every limit checked before stopping
        if calcs is not None:
            await self.group.stop()
        merged = dict(base)
        merged[axis.tag] = target
        self._motion_calcs = None
        await self.group.move(targets, wait=False)
        self._motion_calcs = merged
        self._motions = {real: real.motion for real in targets}
        if wait:
            await self.group.wait_move()

    def _pending_calcs(self) -> dict[str, float] | None:
        """The calculated targets of the running motion, if this controller started it."""
        calcs, motions = self._motion_calcs, self._motions
        if calcs is None or any(real.motion is not m for real, m in motions.items()):
            return None
        return calcs

    def real_targets(self, targets: Mapping[Any, float]) -> dict[Axis, float]:
        """The real-axis targets of this controller's calculated axes in ``targets`` moving
        together (solved at once: a slit's gap and offset give one pair of blade targets);
        their limits checked, nothing moves. What :class:`Group` asks of it."""
        calcs = self.calc_positions()
        for motor, target in targets.items():
            if not isinstance(motor, CalcAxis) or motor.controller is not self:
                raise DeviceError(
                    self.name, f"{getattr(motor, 'name', motor)} is not one of its axes"
                )
            motor.check_limits(target)
            calcs[motor.tag] = float(target)
        return {self.reals[tag]: value for tag, value in self.calc_to_real(calcs).items()}

    def calc_positions(self) -> dict[str, float]:
        return self.calc_from_real({tag: axis.position for tag, axis in self.reals.items()})

    def calc_from_real(self, reals: dict[str, float]) -> dict[str, float]:
        raise NotImplementedError

    def calc_to_real(self, calcs: dict[str, float]) -> dict[str, float]:
        raise NotImplementedError


class SlitAxisParameters(CalcAxisParameters):
    tag: Literal["gap", "offset"]


class SlitParameters(CalcControllerParameters):
    low: Axis = Field(description="the blade whose edge has the lower coordinate")
    high: Axis = Field(description="the blade whose edge has the higher coordinate")
    axes: list[SlitAxisParameters] = Field(default_factory=list)  # type: ignore[assignment]


class Slit(CalcController):
    """Two blades -> gap and offset. Blade positions are their edges' coordinates:
    ``gap = high - low``, ``offset = (high + low) / 2``."""

    real_tags = ("low", "high")
    calc_tags = ("gap", "offset")
    Parameters = SlitParameters

    @classmethod
    def from_config(cls, name: str, params: SlitParameters, context: Any) -> Slit:
        return cls(name, {"low": params.low, "high": params.high}, list(params.axes))

    def calc_from_real(self, reals: dict[str, float]) -> dict[str, float]:
        low, high = reals["low"], reals["high"]
        return {"gap": high - low, "offset": (high + low) / 2}

    def calc_to_real(self, calcs: dict[str, float]) -> dict[str, float]:
        gap, offset = calcs["gap"], calcs["offset"]
        return {"low": offset - gap / 2, "high": offset + gap / 2}
