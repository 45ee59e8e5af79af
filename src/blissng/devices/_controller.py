"""``AxisController``: what a motor controller for a new instrument implements.

A controller owns the connection to one instrument and its axes. The :class:`Axis` does the
bookkeeping (user/dial, limits, backlash, settings, encoder check, waiting); the controller
only talks to the hardware, in *steps*:

============================  ===============================================================
``initialize()``              open the connection, check the instrument answers (once)
``initialize_axis(axis)``     per-axis set-up (power on, read its channel from parameters)
``read_position(axis)``       the axis' position in steps
``state(axis)``               an :class:`AxisState` (MOVING while the motion runs)
``start_one(motion)``         start moving ``motion.axis`` to ``motion.target_steps``
``start_all(*motions)``       start several axes together (one command if the hardware can)
``stop(axis)``, ``stop_all``  stop (decelerate) and return; the axis polls ``state`` after
``set_velocity(axis, v)``     steps per second; ``set_acceleration(axis, a)`` steps/s²
``wait_motion_update(axis)``  between two looks at a moving axis (default: sleep its
                              ``polling_interval``; event-driven controllers wait for an event)
``home(axis, direction)``     start a home search (direction +1/-1 or None: the controller's
                              choice); the axis polls ``state`` until READY
``read_encoder(axis)``        the encoder in encoder steps (only for axes with ``encoder``)
``set_position(axis, steps)`` load a position into the controller (resynchronisation)
``finalize()``                close the connection
============================  ===============================================================

Everything is ``async``; blocking drivers go through ``blissng.comm.blocking``. Per-axis
configuration beyond :class:`AxisParameters` (a channel address...) is declared by subclassing
it and setting ``AxisParameters`` and ``Parameters`` on the controller. docs/devices.md walks
through a complete example.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, Self

import anyio
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ._axis import Axis, AxisSettings, AxisState, Motion
from ._axis import AxisParameters as AxisParams
from ._errors import DeviceError, UnknownDeviceError


class BuildContext(Protocol):
    """What ``from_config`` receives from ``blissng.config`` (see docs/architecture.md)."""

    settings: Any  # SettingsStore | None

    def get(self, name: str) -> Any: ...


def settings_of(context: Any) -> Any:
    """The context's SettingsStore, or ``None`` (in-memory settings)."""
    return getattr(context, "settings", None)


def check_unique_names(names: Sequence[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} {name!r} is declared twice")
        seen.add(name)


def single_axis(
    controller_class: type[AxisController],
    axis_parameters: type[AxisParams],
    name: str,
    params: BaseModel,
    context: Any,
) -> Axis:
    """An object that *is* one axis (``class: TangoMotor``, ``class: EpicsMotor``): the axis
    of a one-axis controller of the same name, from the object's top-level parameters."""
    fields = params.model_dump(exclude_unset=True)
    fields["name"] = name
    axes = [axis_parameters.model_validate(fields)]
    controller = controller_class(
        name, controller_class.Parameters(axes=axes), settings=settings_of(context)
    )
    return controller.axes[name]


class AxisControllerParameters(BaseModel):
    """The configuration of a controller: its axes (children) and, in subclasses, more."""

    model_config = ConfigDict(extra="forbid")
    axes: list[AxisParams] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_axes(self) -> Self:
        check_unique_names([axis.name for axis in self.axes], "axis")
        return self


class AxisController:
    """Base class of motor controllers. Subclasses override the hardware methods."""

    AxisParameters: ClassVar[type[AxisParams]] = AxisParams
    Parameters: ClassVar[type[AxisControllerParameters]] = AxisControllerParameters
    axis_class: ClassVar[type[Axis]] = Axis  # what _add_axis builds

    def __init__(
        self,
        name: str,
        params: AxisControllerParameters | None = None,
        *,
        settings: Any = None,
    ) -> None:
        self.name = name
        self.params = params if params is not None else self.Parameters()
        self.settings = settings
        self.axes: dict[str, Axis] = {}
        for axis_params in self.params.axes:
            self._add_axis(axis_params)
        self._connected = False
        self._connect_lock = anyio.Lock()

    def _add_axis(self, params: AxisParams) -> Axis:
        store = None
        if self.settings is not None:
            store = self.settings.object(
                params.name, AxisSettings, AxisSettings.from_parameters(params)
            )
        axis = self.axis_class(params.name, self, params, settings=store)
        self.axes[params.name] = axis
        return axis

    @classmethod
    def from_config(cls, name: str, params: AxisControllerParameters, context: Any) -> Self:
        return cls(name, params, settings=settings_of(context))

    def child(self, name: str) -> Axis:
        try:
            return self.axes[name]
        except KeyError:
            known = ", ".join(self.axes) or "none"
            raise UnknownDeviceError(
                self.name, f"has no axis {name!r} (its axes: {known})"
            ) from None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} axes={list(self.axes)}>"

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        """Initialise the hardware and every axis, once (idempotent, safe concurrently)."""
        if self._connected:
            return
        async with self._connect_lock:
            if self._connected:
                return
            await self.initialize()
            for axis in self.axes.values():
                await self.initialize_axis(axis)
            for axis in self.axes.values():
                await axis.sync_with_controller()
            self._connected = True  # only once every axis is ready: a failure retries all

    async def close(self) -> None:
        if self._connected:
            self._connected = False
            for axis in self.axes.values():
                axis.controller_closed()
            await self.finalize()

    # ------------------------------------------------------------------ to implement

    async def initialize(self) -> None:
        """Open the connection; raise a DeviceError naming the controller if it fails."""

    async def initialize_axis(self, axis: Axis) -> None:
        """Per-axis set-up."""

    async def finalize(self) -> None:
        """Close the connection."""

    async def read_position(self, axis: Axis) -> float:
        raise NotImplementedError(f"{type(self).__name__}.read_position")

    async def state(self, axis: Axis) -> AxisState:
        raise NotImplementedError(f"{type(self).__name__}.state")

    async def start_one(self, motion: Motion) -> None:
        raise NotImplementedError(f"{type(self).__name__}.start_one")

    async def start_all(self, *motions: Motion) -> None:
        """Start several axes; override to use one hardware command so they start together."""
        for motion in motions:
            await self.start_one(motion)

    async def stop(self, axis: Axis) -> None:
        raise NotImplementedError(f"{type(self).__name__}.stop")

    async def wait_motion_update(self, axis: Axis) -> None:
        """Between two looks at a moving axis' ``state``: by default sleep its
        ``polling_interval``. A controller whose hardware pushes changes (Tango events, EPICS
        monitors) waits for the next one instead, so the axis sees the end of a motion as
        soon as it is announced and does no polling."""
        await anyio.sleep(axis.polling_interval)

    async def stop_all(self, *axes: Axis) -> None:
        for axis in axes:
            await self.stop(axis)

    async def set_velocity(self, axis: Axis, steps_per_second: float) -> None:
        """Default: the controller has no velocity to set."""

    async def set_acceleration(self, axis: Axis, steps_per_second2: float) -> None:
        """Default: the controller has no acceleration to set."""

    async def home(self, axis: Axis, direction: int | None) -> None:
        raise DeviceError(self.name, f"cannot home {axis.name}: homing not supported")

    async def read_encoder(self, axis: Axis) -> float:
        raise DeviceError(self.name, f"cannot read an encoder for {axis.name}")

    async def set_position(self, axis: Axis, steps: float) -> None:
        raise DeviceError(self.name, f"cannot load a position into {axis.name}")
