"""Triggered acquisition devices: scalers (integrating counters), MCAs, cameras.

They share one life cycle, written once in :class:`TriggeredController`:

- ``prepare``: ``hw_prepare(nframes, exposure, mode)`` with ``nframes = npoints *
  frames_per_trigger`` (0: until stopped);
- ``start``: ``hw_start()`` (arms in hardware mode);
- software mode: ``trigger`` asks ``frames_per_trigger`` frames one after the other
  (``hw_trigger``) and returns when they are acquired (``hw_frames``), so the next ``read``
  returns them; hardware mode: external pulses (the trigger box) make the frames and ``read``
  collects whatever arrived;
- ``read``: ``hw_fetch()`` -> ``{counter: (n, *shape)}``;
- ``stop``: ``hw_stop()``.

A subclass for a new instrument implements the ``hw_*`` methods (docs/devices.md). The kinds:

- :class:`IntegratingCounterController` (scalers): ``hw_fetch_counts`` -> ``(n, ncounters)``;
- :class:`Mca`: ``hw_fetch_spectra`` -> ``(n, nbins)``, plus regions of interest summed here;
- :class:`Camera`: frames stay in the detector's files; ``hw_fetch_references`` returns
  ``(file, dataset, index)`` records (``FRAME_REFERENCE_DTYPE``), channel kind "reference".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import anyio
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from blissng.threads import run_in_thread

from ._counters import Counter, CounterController
from ._errors import DetectorError, DeviceError
from ._protocols import AcquisitionParameters, TriggerMode

# The layout of blissng.acquisition.REFERENCE_DTYPE (docs/data-model.md); defined
# here too because devices sit below acquisition and may not import it.
FRAME_REFERENCE_DTYPE = np.dtype([("file", "S256"), ("dataset", "S128"), ("index", "<i8")])


class TriggeredController(CounterController):
    """Base of devices that acquire frames (points) on software or hardware triggers."""

    supported_trigger_modes: ClassVar[frozenset[TriggerMode]] = frozenset(
        {TriggerMode.SOFTWARE, TriggerMode.HARDWARE}
    )
    polling_interval: float = 0.005
    frame_timeout: float = 5.0  # beyond the exposure time, before a missing frame is an error

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._triggered = 0
        self.nframes = 0

    # ------------------------------------------------------------------ hardware (subclasses)

    async def hw_prepare(self, nframes: int, exposure: float, mode: TriggerMode) -> None:
        raise NotImplementedError(f"{type(self).__name__}.hw_prepare")

    async def hw_start(self) -> None:
        raise NotImplementedError(f"{type(self).__name__}.hw_start")

    async def hw_trigger(self) -> None:
        """Software mode: acquire one frame of the exposure time."""
        raise NotImplementedError(f"{type(self).__name__}.hw_trigger")

    async def hw_frames(self) -> int:
        """Frames acquired since ``hw_start`` (read or not)."""
        raise NotImplementedError(f"{type(self).__name__}.hw_frames")

    async def hw_fetch(self) -> Mapping[str, np.ndarray]:
        """The frames acquired and not yet fetched, ``{counter: (n, *shape)}``."""
        raise NotImplementedError(f"{type(self).__name__}.hw_fetch")

    async def hw_stop(self) -> None:
        raise NotImplementedError(f"{type(self).__name__}.hw_stop")

    # ------------------------------------------------------------------ Acquirable

    async def prepare(self, params: AcquisitionParameters) -> None:
        if params.frames_per_trigger < 1:
            raise DetectorError(
                self.name, f"frames_per_trigger must be >= 1, not {params.frames_per_trigger}"
            )
        await super().prepare(params)
        self.nframes = params.npoints * params.frames_per_trigger
        await self.hw_prepare(self.nframes, params.count_time, params.trigger_mode)

    async def start(self) -> None:
        self._triggered = 0
        await self.hw_start()

    async def trigger(self) -> None:
        if self.params.trigger_mode is TriggerMode.HARDWARE:
            return
        for _ in range(self.params.frames_per_trigger):
            await self.hw_trigger()
            self._triggered += 1
            await self.wait_frames(self._triggered)

    async def wait_frames(self, n: int, timeout: float | None = None) -> None:
        """Wait until ``n`` frames were acquired since the start (polling the device).

        The deadline is checked between requests, never by cancelling one: a request cut
        in the middle could leave its reply to be taken for the next one's.
        """
        exposure = self.params.count_time
        limit = exposure + self.frame_timeout if timeout is None else timeout
        deadline = anyio.current_time() + limit
        if exposure > 0:
            await anyio.sleep(min(exposure, limit))
        while (got := await self.hw_frames()) < n:
            if anyio.current_time() >= deadline:
                raise DetectorError(
                    self.name,
                    f"has {got} frame(s) of {n} expected, {limit:.3g} s after the trigger",
                )
            await anyio.sleep(self.polling_interval)

    async def read(self) -> dict[str, np.ndarray]:
        data = dict(await self.hw_fetch())
        if not data:
            return self._empty()
        for listener in tuple(self._listeners):
            listener(self, data)
        return data

    async def stop(self) -> None:
        await self.hw_stop()


# ---------------------------------------------------------------------- scalers


class IntegratingCounterController(TriggeredController):
    """Counters integrated by the hardware over each point's time (a scaler).

    Subclasses implement the ``hw_*`` life cycle and ``hw_fetch_counts`` -> an ``(n,
    ncounters)`` array in ``counters`` order.
    """

    async def hw_fetch_counts(self) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__}.hw_fetch_counts")

    async def hw_fetch(self) -> Mapping[str, np.ndarray]:
        table = await self.hw_fetch_counts()
        if len(table) == 0:
            return {}
        return {
            c.name: np.ascontiguousarray(table[:, i], dtype=c.dtype)
            for i, c in enumerate(self.counters)
        }


# ---------------------------------------------------------------------- MCA


class RoiCounter(Counter):
    """The sum of an MCA spectrum's bins ``[start, stop)``."""

    def __init__(self, name: str, controller: Mca, start: int, stop: int) -> None:
        super().__init__(name, controller, unit="counts", dtype="uint64")
        self.start = start
        self.stop = stop


class McaParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nbins: int = Field(1024, ge=1, description="bins per spectrum (checked at connection)")
    rois: dict[str, tuple[int, int]] = Field(
        default_factory=dict, description="name -> [first bin, end bin) summed per spectrum"
    )

    @field_validator("rois")
    @classmethod
    def _ranges(cls, rois: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        for name, (start, stop) in rois.items():
            if not 0 <= start < stop:
                raise ValueError(f"roi {name!r}: need 0 <= start < stop, got [{start}, {stop})")
        return rois


class Mca(TriggeredController):
    """A multichannel analyser: one ``spectrum`` (uint32, ``(nbins,)``) per frame and the sums
    of its regions of interest. Subclasses implement ``hw_*`` and ``hw_fetch_spectra``."""

    def __init__(self, name: str, params: McaParameters) -> None:
        super().__init__(name)
        self.nbins = params.nbins
        self.spectrum = self.add_counter(
            Counter("spectrum", self, unit="counts", dtype="uint32", shape=(params.nbins,))
        )
        self.rois: list[RoiCounter] = []
        for roi, (start, stop) in params.rois.items():
            if stop > params.nbins:
                raise DeviceError(name, f"roi {roi!r} ends at {stop}, beyond {params.nbins} bins")
            self.rois.append(self.add_counter(RoiCounter(roi, self, start, stop)))  # type: ignore[arg-type]

    async def hw_fetch_spectra(self) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__}.hw_fetch_spectra")

    async def hw_fetch(self) -> Mapping[str, np.ndarray]:
        spectra = await self.hw_fetch_spectra()
        if len(spectra) == 0:
            return {}
        data = {"spectrum": spectra}
        for roi in self.rois:
            data[roi.name] = spectra[:, roi.start : roi.stop].sum(axis=1, dtype=np.uint64)
        return data

    def check_nbins(self, nbins: int) -> None:
        """Raise if the instrument's spectra do not have the configured number of bins."""
        if nbins != self.nbins:
            raise DeviceError(
                self.name,
                f"the instrument has {nbins} bins but the configuration says nbins: "
                f"{self.nbins}; fix the configuration",
            )


# ---------------------------------------------------------------------- camera


class FrameCounter(Counter):
    """A camera's frames: the channel carries references, not pixels."""

    kind = "reference"

    def __init__(
        self, name: str, controller: Camera, shape: tuple[int, int], frame_dtype: str
    ) -> None:
        super().__init__(name, controller, unit=None, dtype="reference", shape=shape)
        self.frame_shape = shape
        self.frame_dtype = frame_dtype


class CameraParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    frame_dtype: str = "uint16"
    directory: str | None = Field(None, description="where the camera saves its files")
    prefix: str | None = None


class Camera(TriggeredController):
    """A 2D detector that saves its frames in files and reports ``(file, dataset, index)``.

    ``image`` is a reference counter (``kind = "reference"``, frame ``(height, width)``).
    Subclasses implement ``hw_*``, ``hw_fetch_references`` and ``hw_set_saving``.
    """

    def __init__(self, name: str, params: CameraParameters) -> None:
        super().__init__(name)
        self.width = params.width
        self.height = params.height
        self.directory = params.directory
        self.prefix = params.prefix or name
        self.image = self.add_counter(
            FrameCounter("image", self, (params.height, params.width), params.frame_dtype)
        )

    def _empty(self) -> dict[str, np.ndarray]:
        return {"image": np.empty((0,), dtype=FRAME_REFERENCE_DTYPE)}

    async def set_saving(self, directory: str, prefix: str | None = None) -> None:
        """Where the next acquisitions' files go (e.g. the scan's data directory)."""
        self.directory = directory
        self.prefix = prefix or self.prefix

    async def hw_fetch_references(self) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__}.hw_fetch_references")

    async def hw_fetch(self) -> Mapping[str, np.ndarray]:
        refs = await self.hw_fetch_references()
        return {"image": refs} if len(refs) else {}

    @staticmethod
    def references(file: str, dataset: str, first: int, n: int) -> np.ndarray:
        refs = np.empty((n,), dtype=FRAME_REFERENCE_DTYPE)
        refs["file"] = file.encode()
        refs["dataset"] = dataset.encode()
        refs["index"] = np.arange(first, first + n)
        return refs

    @staticmethod
    async def load_frames(refs: np.ndarray) -> np.ndarray:
        """The pixels of referenced frames (read in a worker thread; files opened SWMR)."""

        def load() -> np.ndarray:
            import h5py

            frames = []
            for ref in refs:
                file = bytes(ref["file"]).decode()
                with h5py.File(file, "r", libver="latest", swmr=True) as h5:
                    frames.append(h5[bytes(ref["dataset"]).decode()][int(ref["index"])])
            return np.array(frames)

        return await run_in_thread(load)


__all__ = [
    "FRAME_REFERENCE_DTYPE",
    "Camera",
    "CameraParameters",
    "FrameCounter",
    "IntegratingCounterController",
    "Mca",
    "McaParameters",
    "RoiCounter",
    "TriggeredController",
]
