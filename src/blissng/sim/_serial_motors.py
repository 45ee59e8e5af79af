"""``SimSerialMotorController``: the client of the simulated serial motor controller.

The worked example of docs/devices.md: an :class:`~blissng.devices.AxisController`
for an instrument with a small ASCII command set on a serial line (here a pty served by
``blissng.sim.servers``; the same code drives a real RS-232 controller). Each axis names its
``channel`` (1..N) on the controller. Positions, velocities and accelerations are sent in
steps; the :class:`~blissng.devices.Axis` does every conversion, limit and check.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import Field

from blissng.devices import (
    Axis,
    AxisController,
    AxisControllerParameters,
    AxisParameters,
    AxisState,
    DeviceError,
    Motion,
    UnknownDeviceError,
    settings_of,
)

from ._client import SimClient


class SimSerialAxisParameters(AxisParameters):
    channel: int = Field(ge=1, description="the axis number on the controller (1..N)")


class SimSerialMotorParameters(AxisControllerParameters):
    url: str = Field(description="serial:///dev/ttyS0, or sim://motors for the simulator")
    timeout: float = Field(2.0, gt=0, description="seconds to wait for a reply")
    axes: list[SimSerialAxisParameters] = Field(default_factory=list)  # type: ignore[assignment]


_STATES = {
    "READY": AxisState.READY,
    "MOVING": AxisState.MOVING,
    "HOMING": AxisState.MOVING,  # the axis keeps polling until the search ends
    "LIMPOS": AxisState.LIMPOS,
    "LIMNEG": AxisState.LIMNEG,
    "DISABLED": AxisState.DISABLED,
    "FAULT": AxisState.FAULT,
}

_STATE_REPLY = "(?i:" + "|".join(_STATES) + ")"


class SimSerialMotorController(AxisController):
    """Motors of the simulated serial controller (``SIMMOT``), over a real pty."""

    AxisParameters: ClassVar[type[AxisParameters]] = SimSerialAxisParameters
    Parameters: ClassVar[type[AxisControllerParameters]] = SimSerialMotorParameters

    def __init__(
        self, name: str, params: SimSerialMotorParameters, *, settings: Any = None
    ) -> None:
        super().__init__(name, params, settings=settings)
        channels = [axis.channel for axis in params.axes]
        for channel in set(channels):
            if channels.count(channel) > 1:
                users = [a.name for a in params.axes if a.channel == channel]
                raise DeviceError(name, f"channel {channel} is used by {', '.join(users)}")
        # Requests end with CR, replies with CR LF (docs/sim-protocols.md).
        self.client = SimClient(
            name, params.url, timeout=params.timeout, eol=b"\r\n", write_eol=b"\r"
        )
        self.naxes = 0

    @classmethod
    def from_config(cls, name: str, params: AxisControllerParameters, context: Any) -> Self:
        assert isinstance(params, SimSerialMotorParameters)
        return cls(name, params, settings=settings_of(context))

    @staticmethod
    def channel(axis: Axis) -> int:
        return axis.params.channel  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ connection

    async def initialize(self) -> None:
        idn = await self.client.ask("*IDN?")
        fields = idn.split()
        if len(fields) < 2 or fields[0] != "SIMMOT" or not fields[1].isdigit():
            raise DeviceError(self.name, f"is not a SIMMOT motor controller (*IDN? -> {idn!r})")
        self.naxes = int(fields[1])

    async def initialize_axis(self, axis: Axis) -> None:
        if self.channel(axis) > self.naxes:
            raise UnknownDeviceError(
                self.name,
                f"axis {axis.name} uses channel {self.channel(axis)}, but the controller has "
                f"{self.naxes} axes (1..{self.naxes})",
            )

    async def finalize(self) -> None:
        await self.client.close()

    # ------------------------------------------------------------------ reading

    async def read_position(self, axis: Axis) -> float:
        return (await self.client.ask_numbers(f"?POS {self.channel(axis)}", 1))[0]

    async def read_encoder(self, axis: Axis) -> float:
        return (await self.client.ask_numbers(f"?ENC {self.channel(axis)}", 1))[0]

    async def state(self, axis: Axis) -> AxisState:
        reply = await self.client.ask(f"?STA {self.channel(axis)}", expect=_STATE_REPLY)
        try:
            return _STATES[reply.strip().upper()]
        except KeyError:
            from blissng.comm import ProtocolError

            raise ProtocolError(self.name, f"unknown axis state {reply!r}") from None

    # ------------------------------------------------------------------ motion

    async def start_one(self, motion: Motion) -> None:
        await self.client.do(f"MOV {self.channel(motion.axis)} {round(motion.target_steps)}")

    async def start_all(self, *motions: Motion) -> None:
        """One ``MOV`` for all: the controller starts every listed axis at the same instant."""
        args = " ".join(f"{self.channel(m.axis)} {round(m.target_steps)}" for m in motions)
        await self.client.do(f"MOV {args}")

    async def stop(self, axis: Axis) -> None:
        await self.client.do(f"STP {self.channel(axis)}")

    async def stop_all(self, *axes: Axis) -> None:
        await self.client.do("STP " + " ".join(str(self.channel(a)) for a in axes))

    async def home(self, axis: Axis, direction: int | None) -> None:
        where = "" if direction is None else (" +" if direction > 0 else " -")
        await self.client.do(f"HOME {self.channel(axis)}{where}")

    # ------------------------------------------------------------------ parameters

    async def set_velocity(self, axis: Axis, steps_per_second: float) -> None:
        await self.client.do(f"VEL {self.channel(axis)} {steps_per_second:g}")

    async def set_acceleration(self, axis: Axis, steps_per_second2: float) -> None:
        await self.client.do(f"ACC {self.channel(axis)} {steps_per_second2:g}")

    async def set_position(self, axis: Axis, steps: float) -> None:
        await self.client.do(f"POS {self.channel(axis)} {round(steps)}")
        if axis.encoder is not None:
            ratio = axis.encoder.steps_per_unit / axis.steps_per_unit
            await self.client.do(f"ENC {self.channel(axis)} {round(steps * ratio)}")
