"""What the acquisition layer may ask of a device: the contract between ``devices`` and
``acquisition`` (which sits above and imports this, never the reverse).

In the spirit of ophyd-async's protocols: devices implement small async interfaces, and the
acquisition engine adapts them generically into masters and slaves. A device never builds
acquisition objects itself.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

import numpy as np


class TriggerMode(enum.Enum):
    SOFTWARE = "software"  # the master calls trigger() once per point
    HARDWARE = "hardware"  # armed by start(); external pulses make points; read() polls


@dataclasses.dataclass(frozen=True)
class AcquisitionParameters:
    count_time: float
    npoints: int  # 0 = until stopped
    trigger_mode: TriggerMode = TriggerMode.SOFTWARE
    frames_per_trigger: int = 1


@runtime_checkable
class CounterLike(Protocol):
    """One measured quantity: one channel in a scan."""

    name: str
    unit: str | None
    dtype: str  # numpy dtype string, e.g. "float64"
    shape: tuple[int, ...]  # () for scalars, (nbins,) for MCA spectra, (h, w) for frames


@runtime_checkable
class Acquirable(Protocol):
    """A counter controller, an MCA, a camera: its counters are read together in one call.

    Lifecycle per scan: ``prepare`` once (or per point for ``prepare_once=False`` users),
    ``start`` (arm), then per point ``trigger`` (software mode) and ``read``; ``stop`` always,
    also after errors and on abort (called in a shielded scope).

    ``read`` returns the points that are ready since the last call, as one array per counter
    name of shape ``(n, *counter.shape)`` (``n`` may be 0), so buffered devices hand over many
    points per call. In software mode, after ``trigger`` returns, one ``read`` returns that
    point. ``wait_ready`` returns when the device can take the next trigger.
    """

    name: str

    @property
    def counters(self) -> Sequence[CounterLike]: ...

    async def prepare(self, params: AcquisitionParameters) -> None: ...

    async def start(self) -> None: ...

    async def trigger(self) -> None: ...

    async def read(self) -> Mapping[str, np.ndarray]: ...

    async def wait_ready(self) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class Movable(Protocol):
    """A motor (real or calculated) as a scan master moves it."""

    name: str

    @property
    def position(self) -> float: ...  # last known user position, no I/O

    async def read_position(self) -> float: ...

    async def move(self, target: float, wait: bool = True) -> None: ...

    async def wait_move(self) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class TriggerSource(Protocol):
    """A hardware trigger master (the trigger box): emits ``npoints`` pulses on its outputs."""

    name: str

    async def prepare_pulses(self, npoints: int, period: float, width: float) -> None: ...

    async def start_pulses(self) -> None: ...

    async def wait_done(self) -> None: ...

    async def stop(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class PulseTrain:
    """The pulses a trigger source emits once started: ``npulses`` of ``width`` seconds.

    Time-based (``period`` > 0): one every ``period`` seconds, from the start or, with
    ``start``, from the instant the encoder on ``input`` passes ``start``.
    Position-based (``step`` != 0): pulse ``k`` when the encoder on ``input`` passes
    ``start + k * step``. Positions are encoder counts, ``input`` the source's encoder input.
    """

    npulses: int
    width: float
    period: float = 0.0
    input: int | None = None
    start: float | None = None
    step: float = 0.0

    @property
    def position_based(self) -> bool:
        return self.step != 0


@runtime_checkable
class LatchingTriggerSource(TriggerSource, Protocol):
    """A trigger box that follows encoders (a MUSST, a PandA): pulses at positions or at
    times, and the encoders of its inputs latched with every pulse."""

    def input_of(self, axis: str) -> int | None:
        """The encoder input wired to the motor named ``axis`` (None if none)."""
        ...

    async def prepare_train(self, train: PulseTrain, latch: Sequence[int] = ()) -> None:
        """Program the next train, latching the encoders of inputs ``latch``."""
        ...

    async def read_latched(self) -> np.ndarray:
        """What was latched and not yet read: ``(n, 1 + len(latch))``, per pulse its time
        since the start (s) then the counts of each latched input."""
        ...

    async def pulses_emitted(self) -> int: ...


@runtime_checkable
class ScanAxis(Movable, Protocol):
    """A motor a continuous scan drives at constant velocity (``blissng.devices.Axis``)."""

    @property
    def velocity(self) -> float: ...

    @property
    def acceleration(self) -> float: ...

    @property
    def velocity_high_limit(self) -> float: ...

    @property
    def encoder_steps_per_unit(self) -> float: ...

    def check_limits(self, user_target: float) -> None: ...

    def dial_to_user(self, dial: float) -> float: ...

    def user_to_dial(self, user: float) -> float: ...

    def velocity_override(self, velocity: float) -> AbstractAsyncContextManager[None]: ...
