"""What a sim host runs: validated descriptions of its simulators (JSON on the command line).

Units are the simulators' own: steps, steps/s, seconds, counts per second, bins, pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PeakSpec(_Model):
    """A gaussian peak over motor positions (steps): ``background + height * prod(gauss_i)``."""

    axes: dict[int, tuple[float, float]] = Field(
        default_factory=lambda: {1: (0.0, 500.0)}, description="axis -> (center, width) steps"
    )
    height: float = 1e4
    background: float = 10.0
    noise: float = Field(default=0.01, ge=0, description="relative gaussian noise")


class AxisSpec(_Model):
    position: float = 0.0
    velocity: float = Field(default=2000.0, gt=0)
    acceleration: float = Field(default=20000.0, gt=0)
    low_limit: float = -1_000_000.0
    high_limit: float = 1_000_000.0
    slip: float = Field(default=0.0, ge=0, lt=1)
    encoder_ratio: float = 1.0
    home_position: float = 0.0


class _SimBase(_Model):
    listen: Literal["tcp", "unix", "pty"] = "tcp"
    max_clients: int | None = Field(default=None, ge=1)


class MotorControllerSpec(_SimBase):
    kind: Literal["motor_controller"] = "motor_controller"
    listen: Literal["tcp", "unix", "pty"] = "pty"
    axes: list[AxisSpec] = Field(default_factory=lambda: [AxisSpec() for _ in range(6)])


class ScalerChannelSpec(_Model):
    name: str
    source: Literal["clock", "constant", "peak"] = "peak"
    rate: float = 1e5  # constant channels, counts per second
    noise: float = Field(default=0.01, ge=0)
    peak: PeakSpec | None = None


def _default_channels() -> list[ScalerChannelSpec]:
    return [
        ScalerChannelSpec(name="timer", source="clock", noise=0.0),
        ScalerChannelSpec(name="mon", source="constant", rate=1e5),
        ScalerChannelSpec(name="det", peak=PeakSpec()),
        ScalerChannelSpec(
            name="diode", peak=PeakSpec(axes={1: (0.0, 500.0), 2: (0.0, 500.0)}, height=5e3)
        ),
    ]


class ScalerSpec(_SimBase):
    kind: Literal["scaler"] = "scaler"
    motors: str | None = Field(
        default="motors", description="the motor controller sim of this host"
    )
    channels: list[ScalerChannelSpec] = Field(default_factory=_default_channels)


class McaSpec(_SimBase):
    kind: Literal["mca"] = "mca"
    nbins: int = Field(default=1024, ge=1)
    lines: list[tuple[float, float, float]] = Field(
        default_factory=lambda: [(200.0, 6.0, 2e3), (350.0, 8.0, 5e3), (720.0, 10.0, 1e3)],
        description="(center bin, width bins, height counts/s per bin)",
    )
    background: float = 2.0
    motors: str | None = "motors"
    scale: PeakSpec | None = Field(
        default=None, description="intensity factor from motor positions"
    )


class CameraSpec(_SimBase):
    kind: Literal["camera"] = "camera"
    width: int = Field(default=128, ge=1)
    height: int = Field(default=96, ge=1)
    spot: tuple[float, float, float, float] = (64.0, 48.0, 6.0, 2e4)  # x, y, sigma, counts/s
    background: float = 50.0
    motors: str | None = "motors"
    scale: PeakSpec | None = None


class TriggerBoxSpec(_SimBase):
    kind: Literal["trigger_box"] = "trigger_box"
    outputs: list[str] = Field(default_factory=lambda: ["scaler", "mca", "camera"])
    motors: str | None = Field(
        default="motors",
        description="the motor controller sim of this host whose axes are the encoder inputs",
    )


class GoodDeviceSpec(_SimBase):
    kind: Literal["good_device"] = "good_device"
    capacity: int = Field(default=1_000_000, ge=1)


class BadDeviceSpec(_SimBase):
    kind: Literal["bad_device"] = "bad_device"
    listen: Literal["tcp", "unix", "pty"] = "unix"
    rate: float = Field(default=500.0, gt=0, description="packets per second")
    fifo: int = Field(default=50, ge=0, description="send queue, packets")


SimSpec = Annotated[
    MotorControllerSpec
    | ScalerSpec
    | McaSpec
    | CameraSpec
    | TriggerBoxSpec
    | GoodDeviceSpec
    | BadDeviceSpec,
    Field(discriminator="kind"),
]


class HostSpec(_Model):
    """One sim host process: its working directory and its simulators by name."""

    directory: Path
    simulators: dict[str, SimSpec]
    seed: int | None = None
