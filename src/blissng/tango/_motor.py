"""Motors over Tango devices: ``TangoMotor`` (one device, the Tango Motor interface),
``TangoMotorController`` (several), ``TangoAttributeAxis`` (any writable attribute scanned
like a motor).

What maps to what (docs/control-systems.md):

=====================================  =====================================================
Tango                                  blissng
=====================================  =====================================================
write ``Position``                     ``start_one``: the move starts
``Position`` (or ``readback``)         the axis' position, in steps (``steps_per_unit``: 1)
``State`` ON, STANDBY, OPEN, CLOSE...  READY
``State`` MOVING, RUNNING              MOVING
``State`` ALARM + ``Limit_switches``   LIMPOS (upper), LIMNEG (lower), else READY
``State`` FAULT, UNKNOWN               FAULT
``State`` OFF, DISABLE, INIT           DISABLED
``Stop`` command                       ``stop`` (a cancelled move, Ctrl-C)
``Velocity``, ``Acceleration``         velocity, acceleration (read at connection when the
                                       YAML leaves them out; written when they change)
``Position`` min_value / max_value     software limits (dial), unless the YAML gives them
=====================================  =====================================================

Change events: at connection the controller subscribes to ``State``, the position and
``Limit_switches``. Where the device pushes them, a moving axis waits for the next event
instead of polling (``wait_motion_update``); if no event comes for ``liveness`` seconds it
reads ``State`` once (which also detects a server that died). Where the device does not push
events, the axis polls every ``polling_interval``. A call that finds the server gone marks the
events stale; the next command subscribes again (the proxy itself reconnects).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import Field

from blissng.devices import (
    Axis,
    AxisController,
    AxisControllerParameters,
    AxisParameters,
    AxisState,
    DeviceError,
    Motion,
    Pushed,
    single_axis,
)

from ._device import DEFAULT_TIMEOUT, Subscription, TangoDevice, import_tango
from ._errors import CONNECTION_REASONS, TangoError


class TangoAxisParameters(AxisParameters):
    """One axis over a Tango device (a child of ``TangoMotorController``)."""

    tango_name: str = Field(description="device name (id00/motor/1) or full tango:// name")
    tango_host: str | None = Field(
        None, description="host:port (or host:port#dbase=no); default: the controller's, or "
        "TANGO_HOST",
    )  # fmt: skip
    attribute: str = Field("Position", description="written to move; read for the position")
    readback: str | None = Field(None, description="read the position here instead")
    stop_command: str | None = Field("Stop", description="command that stops a motion")
    use_state: bool = Field(True, description="take MOVING/READY... from the device's State")
    events: bool = Field(True, description="use change events where the device pushes them")
    liveness: float = Field(
        1.0, gt=0, description="s without an event while moving before State is read"
    )
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0, description="seconds, every Tango call")


class TangoMotorControllerParameters(AxisControllerParameters):
    axes: list[TangoAxisParameters] = Field(default_factory=list)  # type: ignore[assignment]
    tango_host: str | None = Field(None, description="default tango_host of the axes")


class TangoMotorParameters(TangoAxisParameters):
    """``class: TangoMotor``: one axis, configured at the top level."""

    name: str = ""  # the object's name (the configuration passes it apart)


class TangoAttributeAxisParameters(TangoMotorParameters):
    """``class: TangoAttributeAxis``: a writable attribute (a setpoint) scanned like a motor."""

    attribute: str = Field(description="the writable attribute (a setpoint)")
    stop_command: str | None = None


def _tango_states(device: str) -> dict[Any, AxisState]:
    DevState = import_tango(device).DevState
    table = dict.fromkeys(("ON", "STANDBY", "OPEN", "CLOSE", "EXTRACT", "INSERT"), AxisState.READY)
    table |= {"MOVING": AxisState.MOVING, "RUNNING": AxisState.MOVING}
    table |= {"FAULT": AxisState.FAULT, "UNKNOWN": AxisState.FAULT}
    table |= {"OFF": AxisState.DISABLED, "DISABLE": AxisState.DISABLED, "INIT": AxisState.DISABLED}
    return {getattr(DevState, name): state for name, state in table.items()}


def _limit(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None  # "Not specified"
    return value if math.isfinite(value) else None


@dataclasses.dataclass
class _Link:
    """What the controller keeps per axis: the device, its pushed values, subscriptions."""

    device: TangoDevice
    pushed: Pushed = dataclasses.field(default_factory=Pushed)
    subscriptions: list[Subscription] = dataclasses.field(default_factory=list)
    position_attribute: str = "Position"
    has_switches: bool = False
    has_velocity: bool = False
    has_acceleration: bool = False
    state_events: int = 0
    generation: int = 0  # of the subscriptions: events of older ones are ignored


class TangoAxis(Axis):
    """An axis whose controller talks to Tango: ``close()`` closes the device's proxy (a
    ``class: TangoMotor`` object is an axis, and the session closes what it built)."""

    async def close(self) -> None:
        await self.controller.close()

    @property
    def tango_device(self) -> TangoDevice:
        """The device proxy wrapper (``calls``, ``trl``)."""
        return self.controller.link(self).device  # type: ignore[attr-defined]


class TangoMotorController(AxisController):
    """Axes over Tango devices, one device per axis; see the module docstring."""

    AxisParameters: ClassVar[type[AxisParameters]] = TangoAxisParameters
    Parameters: ClassVar[type[AxisControllerParameters]] = TangoMotorControllerParameters
    axis_class: ClassVar[type[Axis]] = TangoAxis

    def __init__(self, name: str, params: AxisControllerParameters | None = None, *, settings=None):
        super().__init__(name, params, settings=settings)
        self._states: dict[Any, AxisState] | None = None
        for axis in self.axes.values():
            p = self._p(axis)
            host = p.tango_host or getattr(self.params, "tango_host", None)
            axis.controller_data["tango"] = _Link(
                TangoDevice(axis.name, p.tango_name, host, timeout=p.timeout),
                position_attribute=p.readback or p.attribute,
            )

    @staticmethod
    def _p(axis: Axis) -> TangoAxisParameters:
        return axis.params  # type: ignore[return-value]

    def link(self, axis: Axis) -> _Link:
        link: _Link = axis.controller_data["tango"]
        return link

    # ------------------------------------------------------------------ connection

    async def initialize(self) -> None:
        self._states = _tango_states(self.name)

    async def initialize_axis(self, axis: Axis) -> None:
        p, link = self._p(axis), self.link(axis)
        device = link.device
        names = await device.attribute_names()
        for attribute in {p.attribute, link.position_attribute}:
            if attribute.lower() not in names:
                raise DeviceError(
                    axis.name,
                    f"{device.trl} has no attribute {attribute!r}; its attributes: "
                    f"{', '.join(sorted(names))}",
                )
        link.has_switches = "limit_switches" in names
        link.has_velocity = "velocity" in names
        link.has_acceleration = "acceleration" in names
        config = await device.attribute_config(p.attribute)
        spu = axis.steps_per_unit
        defaults: dict[str, float | None] = {}
        low, high = _limit(config.min_value), _limit(config.max_value)
        if low is not None or high is not None:
            dials = [None if v is None else v / spu for v in (low, high)]
            if spu < 0:
                dials.reverse()
            defaults["low_limit"], defaults["high_limit"] = dials
        if link.has_velocity:
            defaults["velocity"] = abs(float(await device.read("Velocity")) / spu)
        if link.has_acceleration:
            defaults["acceleration"] = abs(float(await device.read("Acceleration")) / spu)
        axis.use_controller_defaults(**{k: v for k, v in defaults.items() if v})
        if axis.unit is None and config.unit not in ("", "No unit", None):
            axis.unit = str(config.unit)
        if p.events:
            await self._subscribe(axis, link)

    async def _subscribe(self, axis: Axis, link: _Link) -> None:
        """Subscribe to State, the position and the limit switches; live if all are pushed."""
        await self._unsubscribe(link)
        p = self._p(axis)
        device, pushed = link.device, link.pushed
        pushed.values.clear()
        link.generation += 1
        generation = link.generation

        def current() -> bool:  # a late event of an older subscription changes nothing
            return link.generation == generation

        def on_state(value: Any) -> None:
            if current():
                link.state_events += 1
                pushed.update("state", value)

        def on_error(error: TangoError) -> None:
            if current():
                pushed.fail(error)

        wanted: list[tuple[str, Any]] = [(link.position_attribute, "position")]
        if p.use_state:
            wanted.insert(0, ("State", on_state))
        if link.has_switches:
            wanted.append(("Limit_switches", "switches"))
        for attribute, key in wanted:
            callback = key if callable(key) else _updater(pushed, key, current)
            subscription = await device.subscribe(attribute, callback, on_error)
            if subscription is None:  # not pushed: poll this axis
                await self._unsubscribe(link)
                return
            link.subscriptions.append(subscription)
        pushed.error = None
        pushed.live = True

    async def _unsubscribe(self, link: _Link) -> None:
        link.pushed.live = False
        subscriptions, link.subscriptions = link.subscriptions, []
        for subscription in subscriptions:
            await link.device.unsubscribe(subscription)

    async def _renew_events(self, axis: Axis) -> None:
        """Before a command: subscribe again if the events went stale (server restarted)."""
        link = self.link(axis)
        if self._p(axis).events and not link.pushed.live and link.pushed.error is not None:
            await self._subscribe(axis, link)

    async def close(self) -> None:
        """Release the connections also when ``connect`` failed half-way (a PV that never
        connected still has a channel searching for it)."""
        await super().close()
        await self.finalize()

    async def finalize(self) -> None:
        for axis in self.axes.values():
            link = self.link(axis)
            await self._unsubscribe(link)
            await link.device.close()

    # ------------------------------------------------------------------ reading

    async def _guard(self, axis: Axis, coro: Any) -> Any:
        """Await a device call; a server found gone makes the pushed values stale."""
        try:
            return await coro
        except TangoError as exc:
            if exc.reason in CONNECTION_REASONS:
                self.link(axis).pushed.fail(exc)
            raise

    async def read_position(self, axis: Axis) -> float:
        link = self.link(axis)
        pushed = link.pushed
        if pushed.live and "position" in pushed.values and self._cached_moving(axis, link):
            return float(pushed.values["position"])
        return float(await self._guard(axis, link.device.read(link.position_attribute)))

    def _cached_moving(self, axis: Axis, link: _Link) -> bool:
        if not self._p(axis).use_state:
            return False
        return self._map(link.pushed.get("state"), link.pushed.get("switches")) is AxisState.MOVING

    async def state(self, axis: Axis) -> AxisState:
        p, link = self._p(axis), self.link(axis)
        if not p.use_state:
            return AxisState.READY
        pushed = link.pushed
        if pushed.live and "state" in pushed.values:
            return self._map(pushed.values["state"], pushed.get("switches"))
        value = await self._guard(axis, link.device.state())
        switches = None
        if link.has_switches and self._states and self._states.get(value) is None:
            switches = await self._guard(axis, link.device.read("Limit_switches"))
        return self._map(value, switches)

    def _map(self, value: Any, switches: Any) -> AxisState:
        states = self._states or _tango_states(self.name)
        state = states.get(value)
        if state is not None:
            return state
        if str(value) == "ALARM" and switches is not None and len(switches) >= 3:
            if switches[1]:
                return AxisState.LIMPOS
            if switches[2]:
                return AxisState.LIMNEG
        return AxisState.READY if str(value) == "ALARM" else AxisState.FAULT

    # ------------------------------------------------------------------ motion

    async def start_one(self, motion: Motion) -> None:
        axis = motion.axis
        p, link = self._p(axis), self.link(axis)
        await self._renew_events(axis)
        before = link.state_events
        await self._guard(axis, link.device.write(p.attribute, motion.target_steps))
        if p.use_state and link.pushed.live and link.state_events == before:
            # No State event yet: read it once, so the axis never takes the state from before
            # the move for its end. An event that arrives meanwhile is newer: it wins.
            state = await self._guard(axis, link.device.state())
            if link.state_events == before:
                link.pushed.values["state"] = state

    async def wait_motion_update(self, axis: Axis) -> None:
        link = self.link(axis)
        pushed = link.pushed
        if not pushed.live:
            await super().wait_motion_update(axis)
            return
        if not await pushed.wait_change(self._p(axis).liveness):
            # Quiet for a while: is the server still there, and is our state current?
            before = link.state_events
            state = await self._guard(axis, link.device.state())
            if link.state_events == before:
                pushed.values["state"] = state

    async def stop(self, axis: Axis) -> None:
        p = self._p(axis)
        if p.stop_command:
            await self._guard(axis, self.link(axis).device.command(p.stop_command))

    async def set_velocity(self, axis: Axis, steps_per_second: float) -> None:
        link = self.link(axis)
        if link.has_velocity:
            await self._guard(axis, link.device.write("Velocity", float(steps_per_second)))

    async def set_acceleration(self, axis: Axis, steps_per_second2: float) -> None:
        link = self.link(axis)
        if link.has_acceleration:
            await self._guard(axis, link.device.write("Acceleration", float(steps_per_second2)))


def _updater(pushed: Pushed, key: str, current: Callable[[], bool]) -> Callable[[Any], None]:
    def update(value: Any) -> None:
        if current():
            pushed.update(key, value)

    return update


class TangoMotor(TangoMotorController):
    """``class: TangoMotor``: one Tango motor device as one axis (the object is the axis)."""

    Parameters: ClassVar[type[Any]] = TangoMotorParameters

    @classmethod
    def from_config(cls, name: str, params: Any, context: Any) -> Any:
        return single_axis(TangoMotorController, TangoAxisParameters, name, params, context)


class TangoAttributeAxis(TangoMotor):
    """``class: TangoAttributeAxis``: a writable Tango attribute scanned like a motor."""

    Parameters: ClassVar[type[Any]] = TangoAttributeAxisParameters

    @classmethod
    def from_config(cls, name: str, params: Any, context: Any) -> Any:
        fields = params.model_dump(exclude_unset=True)
        fields.setdefault("stop_command", None)
        single = TangoMotorParameters.model_validate(fields)
        return single_axis(TangoMotorController, TangoAxisParameters, name, single, context)


__all__ = [
    "TangoAttributeAxis",
    "TangoAxis",
    "TangoAxisParameters",
    "TangoMotor",
    "TangoMotorController",
    "TangoMotorControllerParameters",
]
