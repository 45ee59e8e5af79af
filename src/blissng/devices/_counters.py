"""Counters and counter controllers: what a scan reads at each point.

A :class:`Counter` is one measured quantity (one channel in a scan): name, unit, dtype and
shape, and the controller that reads it. A :class:`CounterController` reads all its counters
together, in one call, and implements :class:`blissng.devices.Acquirable`:

- :class:`SamplingCounterController`: ``trigger`` samples every counter repeatedly during the
  count time (one ``read_all`` call per sample) and reduces the samples per counter with its
  :class:`SamplingMode`. Subclasses implement ``read_all``.
- :class:`~blissng.devices.IntegratingCounterController` (scalers, in
  ``triggered``): the hardware integrates over the count time; one value per count.
- :class:`~blissng.devices.CalcCounterController` (in ``_calc_counters``): counters derived
  from other counters' values.

Points wait in the controller until ``read`` hands them over as ``{counter name: (n, *shape)
array}``. Controllers tell their read listeners (calculation counters) what they handed over.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Self

import anyio
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ._controller import check_unique_names
from ._errors import DetectorError, DeviceError, UnknownDeviceError
from ._protocols import AcquisitionParameters, TriggerMode

ReadListener = Callable[["CounterController", Mapping[str, np.ndarray]], None]


class Counter:
    """One measured quantity of a controller. Satisfies ``protocols.CounterLike``."""

    def __init__(
        self,
        name: str,
        controller: CounterController,
        *,
        unit: str | None = None,
        dtype: str = "float64",
        shape: tuple[int, ...] = (),
    ) -> None:
        self.name = name
        self.controller = controller
        self.unit = unit
        self.dtype = dtype
        self.shape = tuple(shape)

    @property
    def fullname(self) -> str:
        return f"{self.controller.name}:{self.name}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.fullname}>"

    def __info__(self) -> str:
        return (
            f"counter {self.name} of {self.controller.name}: dtype {self.dtype}, "
            f"shape {self.shape}, unit {self.unit or '-'}"
        )


class CounterController:
    """Base of everything that reads counters; implements ``protocols.Acquirable``.

    Subclasses fill ``self._pending`` (one row per point: one value per counter, in the
    order of ``self.counters``) and usually override ``trigger``/``start``/``stop``.
    """

    supported_trigger_modes: ClassVar[frozenset[TriggerMode]] = frozenset({TriggerMode.SOFTWARE})

    def __init__(self, name: str) -> None:
        self.name = name
        self._counters: dict[str, Counter] = {}
        self._pending: list[list[Any]] = []
        self._listeners: list[ReadListener] = []
        self.params = AcquisitionParameters(count_time=0.0, npoints=1)
        self._all_float_scalars = True
        self._names: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} counters={list(self._counters)}>"

    # ------------------------------------------------------------------ counters

    def add_counter(self, counter: Counter) -> Counter:
        if counter.name in self._counters:
            raise DeviceError(self.name, f"counter {counter.name!r} is declared twice")
        self._counters[counter.name] = counter
        self._all_float_scalars = all(
            c.shape == () and c.dtype == "float64" for c in self._counters.values()
        )
        self._names = tuple(self._counters)
        return counter

    @property
    def counters(self) -> Sequence[Counter]:
        return tuple(self._counters.values())

    def child(self, name: str) -> Counter:
        try:
            return self._counters[name]
        except KeyError:
            known = ", ".join(self._counters) or "none"
            raise UnknownDeviceError(
                self.name, f"has no counter {name!r} (its counters: {known})"
            ) from None

    def add_read_listener(self, listener: ReadListener) -> Callable[[], None]:
        """``listener(controller, data)`` after every non-empty ``read``; returns a remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def connect(self) -> None:
        """Open the connection to the hardware (idempotent); nothing to do by default."""

    # ------------------------------------------------------------------ Acquirable

    async def prepare(self, params: AcquisitionParameters) -> None:
        if params.trigger_mode not in self.supported_trigger_modes:
            modes = ", ".join(sorted(m.value for m in self.supported_trigger_modes))
            raise DetectorError(
                self.name,
                f"does not support {params.trigger_mode.value} triggering (supported: {modes})",
            )
        if params.count_time < 0 or not math.isfinite(params.count_time):
            raise DetectorError(self.name, f"invalid count time {params.count_time!r}")
        await self.connect()
        self.params = params
        self._pending.clear()

    async def start(self) -> None:
        """Arm (nothing to do in software mode by default)."""

    async def trigger(self) -> None:
        raise NotImplementedError(f"{type(self).__name__}.trigger")

    async def read(self) -> dict[str, np.ndarray]:
        pending = self._pending
        if not pending:
            return self._empty()
        self._pending = []
        counters = self.counters
        if self._all_float_scalars:
            # the step-scan hot path: one array, a column view per counter
            data = dict(zip(self._names, np.array(pending, dtype=np.float64).T, strict=True))
        else:
            data = {
                c.name: np.array([row[i] for row in pending], dtype=c.dtype)
                for i, c in enumerate(counters)
            }
        for listener in tuple(self._listeners):
            listener(self, data)
        return data

    def _empty(self) -> dict[str, np.ndarray]:
        return {c.name: np.empty((0, *c.shape), dtype=c.dtype) for c in self.counters}

    async def wait_ready(self) -> None:
        """Ready at once by default (``trigger`` returns when the point is measured)."""

    async def stop(self) -> None:
        """Nothing to stop by default."""

    # ------------------------------------------------------------------ convenience

    async def count(self, count_time: float) -> dict[str, np.ndarray]:
        """One software-triggered point: ``{counter name: value}`` (``ct`` without a scan)."""
        await self.prepare(AcquisitionParameters(count_time=count_time, npoints=1))
        try:
            await self.start()
            await self.trigger()
            data = await self.read()
        finally:
            with anyio.CancelScope(shield=True):
                await self.stop()
        return {name: values[0] for name, values in data.items()}


# ---------------------------------------------------------------------- sampling counters


class SamplingMode(enum.Enum):
    """How samples taken during the count time are reduced (BLISS modes)."""

    MEAN = "MEAN"
    INTEGRATE = "INTEGRATE"  # mean * count time
    SINGLE = "SINGLE"  # the first sample
    LAST = "LAST"  # the last sample
    STATS = "STATS"  # [mean, N, std, var, min, max, p2v]
    INTEGRATE_STATS = "INTEGRATE_STATS"  # STATS of the samples * count time
    SAMPLES = "SAMPLES"  # the ``nsamples`` samples themselves


STATS_FIELDS = ("mean", "N", "std", "var", "min", "max", "p2v")


def _stats(samples: np.ndarray) -> np.ndarray:
    return np.array(
        [
            samples.mean(),
            len(samples),
            samples.std(),
            samples.var(),
            samples.min(),
            samples.max(),
            samples.max() - samples.min(),
        ]
    )


class SamplingCounter(Counter):
    """A counter sampled during the count time and reduced with ``mode``.

    STATS and INTEGRATE_STATS counters have shape ``(7,)`` (see ``STATS_FIELDS``); SAMPLES
    counters have shape ``(nsamples,)``; the others are scalars.
    """

    def __init__(
        self,
        name: str,
        controller: CounterController,
        *,
        mode: SamplingMode | str = SamplingMode.MEAN,
        unit: str | None = None,
        nsamples: int = 10,
    ) -> None:
        if nsamples < 1:
            raise DeviceError(name, f"nsamples must be >= 1, not {nsamples}")
        self.nsamples = nsamples
        checked, shape = _mode_and_shape(name, mode, nsamples)
        super().__init__(name, controller, unit=unit, dtype="float64", shape=shape)
        self._mode = checked

    @property
    def mode(self) -> SamplingMode:
        """How the samples of a count are reduced. ``diode.mode = "INTEGRATE"`` (BLISS):
        checked, and used from the next count on (a STATS or SAMPLES mode changes the
        counter's shape)."""
        return self._mode

    @mode.setter
    def mode(self, value: SamplingMode | str) -> None:
        self._mode, self.shape = _mode_and_shape(self.name, value, self.nsamples)
        changed = getattr(self.controller, "counters_changed", None)
        if callable(changed):
            changed()


def _mode_and_shape(
    name: str, mode: SamplingMode | str, nsamples: int
) -> tuple[SamplingMode, tuple[int, ...]]:
    """A sampling mode (by value or name, any case) and the shape it gives a counter."""
    try:
        checked = SamplingMode(mode.upper() if isinstance(mode, str) else mode)
    except ValueError:
        modes = ", ".join(m.value for m in SamplingMode)
        raise DeviceError(name, f"unknown sampling mode {mode!r} (one of {modes})") from None
    if checked in (SamplingMode.STATS, SamplingMode.INTEGRATE_STATS):
        return checked, (len(STATS_FIELDS),)
    if checked is SamplingMode.SAMPLES:
        return checked, (nsamples,)
    return checked, ()


class SamplingCounterParameters(BaseModel):
    """One counter in a sampling controller's configuration (a controller's own counters add
    their fields: a PV, an attribute, a waveform's length)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    unit: str | None = None
    mode: SamplingMode = SamplingMode.MEAN
    nsamples: int = Field(10, ge=1, description="samples kept in SAMPLES mode")


class SamplingControllerParameters(BaseModel):
    """What every sampling counter controller's configuration has: a sampling period and
    counters with unique names (a controller declares ``counters`` with its counters' model)."""

    model_config = ConfigDict(extra="forbid")
    sampling_period: float = Field(0.01, gt=0, description="seconds between samples in a count")
    counters: Sequence[SamplingCounterParameters]

    @model_validator(mode="after")
    def _unique_counter_names(self) -> Self:
        check_unique_names([c.name for c in self.counters], "counter")
        return self


class SamplingCounterController(CounterController):
    """Reads every counter together with ``read_all``, repeatedly over the count time.

    ``trigger`` takes the first sample at once, then one every ``sampling_period`` (real
    awaits in between) until the count time has elapsed, the last sample at its end; a count
    time of 0 takes one sample. With SAMPLES counters, at least ``nsamples`` samples are taken,
    spread over the count time.
    """

    def __init__(self, name: str, *, sampling_period: float = 0.01) -> None:
        super().__init__(name)
        if not sampling_period > 0:
            raise DeviceError(name, f"sampling_period must be > 0, not {sampling_period!r}")
        self.sampling_period = sampling_period
        self._simple = True
        self._min_samples = 1

    def add_counter(self, counter: Counter) -> Counter:
        if not isinstance(counter, SamplingCounter):
            raise DeviceError(self.name, f"{counter.name} is not a SamplingCounter")
        super().add_counter(counter)
        self.counters_changed()
        return counter

    def counters_changed(self) -> None:
        """A counter was added or its mode changed: how the samples are taken follows."""
        modes = {c.mode for c in self._sampling_counters()}
        self._simple = modes <= {SamplingMode.MEAN, SamplingMode.SINGLE, SamplingMode.LAST}
        self._min_samples = max(
            (c.nsamples for c in self._sampling_counters() if c.mode is SamplingMode.SAMPLES),
            default=1,
        )
        self._all_float_scalars = all(
            c.shape == () and c.dtype == "float64" for c in self._counters.values()
        )

    def _sampling_counters(self) -> list[SamplingCounter]:
        return [c for c in self.counters if isinstance(c, SamplingCounter)]

    async def read_all(self, counters: Sequence[SamplingCounter]) -> Sequence[float]:
        """One sample of every counter in ``counters``, in that order, in one call."""
        raise NotImplementedError(f"{type(self).__name__}.read_all")

    async def trigger(self) -> None:
        counters = self.counters
        first = await self.read_all(counters)  # type: ignore[arg-type]
        count_time = self.params.count_time
        if count_time <= 0 and self._min_samples == 1:
            if self._simple:
                self._pending.append(list(first))
            else:
                self._pending.append(self._reduce([first], 0.0))
            return
        samples = [first]
        start = time.perf_counter()
        period = self.sampling_period
        if self._min_samples > 1:
            period = min(period, count_time / (self._min_samples - 1))
        while True:
            elapsed = time.perf_counter() - start
            if elapsed >= count_time and len(samples) >= self._min_samples:
                break
            next_at = min(len(samples) * period, count_time)
            await anyio.sleep(max(next_at - elapsed, 0.0))
            samples.append(await self.read_all(counters))  # type: ignore[arg-type]
        self._pending.append(self._reduce(samples, count_time))

    def _reduce(self, samples: list[Sequence[Any]], count_time: float) -> list[Any]:
        counters = self._sampling_counters()
        if not any(isinstance(c, ArraySamplingCounter) for c in counters):
            table = np.asarray(samples, dtype=np.float64)
            return [reduce_samples(c, table[:, i], count_time) for i, c in enumerate(counters)]
        row: list[Any] = []
        for i, counter in enumerate(counters):
            if isinstance(counter, ArraySamplingCounter):
                row.append(np.asarray(samples[-1][i], dtype=np.float64))
            else:
                column = np.array([sample[i] for sample in samples], dtype=np.float64)
                row.append(reduce_samples(counter, column, count_time))
        return row


def sampling_counter(
    controller: CounterController,
    name: str,
    *,
    mode: SamplingMode | str = SamplingMode.MEAN,
    unit: str | None = None,
    nsamples: int = 10,
    length: int | None = None,
) -> SamplingCounter:
    """A scalar sampling counter, or with ``length`` an :class:`ArraySamplingCounter` (the
    configuration of Tango attributes and EPICS PVs: a spectrum or waveform gives its
    length)."""
    if length is not None:
        return ArraySamplingCounter(name, controller, length=length, unit=unit)
    return SamplingCounter(name, controller, mode=mode, unit=unit, nsamples=nsamples)


class ArraySamplingCounter(SamplingCounter):
    """A counter whose samples are 1D arrays (a Tango spectrum attribute, an EPICS waveform):
    shape ``(length,)``; a count keeps its last sample."""

    def __init__(
        self, name: str, controller: CounterController, *, length: int, unit: str | None = None
    ) -> None:
        super().__init__(name, controller, mode=SamplingMode.LAST, unit=unit)
        self.shape = (length,)


def reduce_samples(counter: SamplingCounter, column: np.ndarray, count_time: float) -> Any:
    """One counter's samples (a 1D array) reduced with its mode: a float, or an array for
    STATS, INTEGRATE_STATS and SAMPLES."""
    mode = counter.mode
    if mode is SamplingMode.MEAN:
        return float(column.mean())
    if mode is SamplingMode.INTEGRATE:
        return float(column.mean()) * count_time
    if mode is SamplingMode.SINGLE:
        return float(column[0])
    if mode is SamplingMode.LAST:
        return float(column[-1])
    if mode is SamplingMode.STATS:
        return _stats(column)
    if mode is SamplingMode.INTEGRATE_STATS:
        return _stats(column * count_time)
    return column[: counter.nsamples]  # SAMPLES
