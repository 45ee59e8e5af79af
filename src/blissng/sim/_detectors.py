"""Clients of the simulated triggered detectors: scaler, MCA, camera (TCP).

They share the acquisition command set of docs/sim-protocols.md (``PREP``, ``START``,
``TRIG``, ``STOP``, ``?STA``, ``?NPT``, ``READ``), implemented once in
:class:`SimAcquisitionMixin`; each class adds its own ``READ`` format. Software mode: one
``TRIG`` per frame; hardware mode (``EXT``): the trigger box's pulses make the frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from blissng.comm import ProtocolError
from blissng.devices import (
    Camera,
    CameraParameters,
    Counter,
    DeviceError,
    IntegratingCounterController,
    Mca,
    McaParameters,
    SamplingCounter,
    SamplingCounterController,
    SamplingMode,
    TriggerMode,
    check_unique_names,
)

from ._client import SimClient

READ_MAX = 100_000  # frames asked per READ (references: a line whatever the number)
SCALER_READ_MAX = 8_000  # points per READ: a text line of at most ~1 MB (the line limit)
MCA_READ_BYTES = 4 * 2**20  # spectra per READ: about this many bytes


class SimAddress(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="tcp://host:port, or sim://NAME for a blissng simulator")
    timeout: float = Field(2.0, gt=0, description="seconds to wait for a reply")


class SimAcquisitionMixin:
    """The common acquisition commands; the class using it sets ``self.client``."""

    name: str
    client: SimClient
    _connected: bool = False
    idn_prefix = ""

    async def connect(self) -> None:
        if self._connected:
            return
        idn = await self.client.ask("*IDN?")
        if not idn.startswith(self.idn_prefix):
            raise DeviceError(self.name, f"is not a {self.idn_prefix} device (*IDN? -> {idn!r})")
        await self.check_instrument(idn)
        self._connected = True

    async def check_instrument(self, idn: str) -> None:
        """Compare the instrument with the configuration (subclasses)."""

    async def hw_prepare(self, nframes: int, exposure: float, mode: TriggerMode) -> None:
        if await self.client.ask("?STA") != "IDLE":  # left armed by an aborted acquisition
            await self.client.do("STOP")
        await self.before_prepare()
        kind = "EXT" if mode is TriggerMode.HARDWARE else "SOFT"
        await self.client.do(f"PREP {nframes} {exposure:.9g} {kind}")

    async def before_prepare(self) -> None:
        """Per-device set-up before ``PREP`` (subclasses)."""

    async def hw_start(self) -> None:
        await self.client.do("START")

    async def hw_trigger(self) -> None:
        await self.client.do("TRIG")

    async def hw_frames(self) -> int:
        reply = await self.client.ask("?NPT")
        if not reply.isdigit():
            raise ProtocolError(self.name, f"?NPT answered {reply!r}", command="?NPT")
        return int(reply)

    async def hw_stop(self) -> None:
        await self.client.do("STOP")

    async def missed_triggers(self) -> int:
        """External pulses that came while busy or not armed (since the start)."""
        return int(await self.client.ask("?MISS"))

    async def close(self) -> None:
        self._connected = False
        await self.client.close()


# ---------------------------------------------------------------------- scaler


class SimScalerCounter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    channel: str | None = Field(None, description="the scaler's channel (default: name)")
    unit: str | None = "counts"


class SimTcpScalerParameters(SimAddress):
    counters: list[SimScalerCounter]

    def model_post_init(self, context: Any) -> None:
        check_unique_names([c.name for c in self.counters], "counter")


class SimTcpScaler(SimAcquisitionMixin, IntegratingCounterController):
    """The simulated counter box (``SIMSCALER``): integrating counters, one value per point."""

    Parameters = SimTcpScalerParameters
    idn_prefix = "SIMSCALER"

    def __init__(self, name: str, params: SimTcpScalerParameters) -> None:
        super().__init__(name)
        self.client = SimClient(name, params.url, timeout=params.timeout)
        self._channels = [c.channel or c.name for c in params.counters]
        for counter in params.counters:
            self.add_counter(Counter(counter.name, self, unit=counter.unit, dtype="float64"))
        self._columns: list[int] = []
        self.device_channels: list[str] = []

    @classmethod
    def from_config(cls, name: str, params: SimTcpScalerParameters, context: Any) -> Self:
        return cls(name, params)

    async def check_instrument(self, idn: str) -> None:
        self.device_channels = (await self.client.ask("?CHAN")).split()
        missing = [c for c in self._channels if c not in self.device_channels]
        if missing:
            raise DeviceError(
                self.name,
                f"has no channel {', '.join(missing)} (its channels: "
                f"{', '.join(self.device_channels)})",
            )
        self._columns = [self.device_channels.index(c) for c in self._channels]

    async def hw_fetch_counts(self) -> np.ndarray:
        reply = await self.client.ask(f"READ {SCALER_READ_MAX}")
        fields = reply.split()
        try:
            n = int(fields[0])
            values = np.array(fields[1:], dtype=np.float64)
        except (IndexError, ValueError):
            raise ProtocolError(self.name, f"bad READ reply {reply[:80]!r}") from None
        nchan = len(self.device_channels)
        if len(values) != n * nchan:
            raise ProtocolError(self.name, f"READ announced {n} points, got {len(values)} values")
        return values.reshape(n, nchan)[:, self._columns]


class SimRateCounter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    channel: str | None = Field(None, description="the scaler's channel (default: name)")
    unit: str | None = "counts/s"
    mode: SamplingMode = SamplingMode.MEAN
    nsamples: int = Field(10, ge=1)


class SimScalerRatesParameters(SimAddress):
    counters: list[SimRateCounter]
    sampling_period: float = Field(0.01, gt=0, description="seconds between samples")

    def model_post_init(self, context: Any) -> None:
        check_unique_names([c.name for c in self.counters], "counter")


class SimScalerRates(SamplingCounterController):
    """The counter box's instantaneous rates (``?RATE``) as *sampling* counters: one request
    reads every channel, repeated over the count time and reduced with each counter's mode."""

    Parameters = SimScalerRatesParameters

    def __init__(self, name: str, params: SimScalerRatesParameters) -> None:
        super().__init__(name, sampling_period=params.sampling_period)
        self.client = SimClient(name, params.url, timeout=params.timeout)
        self._channels = [c.channel or c.name for c in params.counters]
        for c in params.counters:
            self.add_counter(
                SamplingCounter(c.name, self, mode=c.mode, unit=c.unit, nsamples=c.nsamples)
            )
        self._columns: list[int] = []
        self._connected = False

    @classmethod
    def from_config(cls, name: str, params: SimScalerRatesParameters, context: Any) -> Self:
        return cls(name, params)

    async def connect(self) -> None:
        if self._connected:
            return
        idn = await self.client.ask("*IDN?")
        if not idn.startswith("SIMSCALER"):
            raise DeviceError(self.name, f"is not a SIMSCALER device (*IDN? -> {idn!r})")
        channels = (await self.client.ask("?CHAN")).split()
        missing = [c for c in self._channels if c not in channels]
        if missing:
            raise DeviceError(
                self.name,
                f"has no channel {', '.join(missing)} (its channels: {', '.join(channels)})",
            )
        self._columns = [channels.index(c) for c in self._channels]
        self._connected = True

    async def read_all(self, counters: Sequence[SamplingCounter]) -> Sequence[float]:
        rates = await self.client.ask_numbers("?RATE")
        try:
            return [rates[i] for i in self._columns]
        except IndexError:
            raise ProtocolError(self.name, f"?RATE gave {len(rates)} values") from None

    async def close(self) -> None:
        self._connected = False
        await self.client.close()


# ---------------------------------------------------------------------- MCA


class SimMcaParameters(SimAddress, McaParameters):
    pass


class SimMca(SimAcquisitionMixin, Mca):
    """The simulated MCA (``SIMMCA``): spectra read as binary ``uint32`` blocks."""

    Parameters = SimMcaParameters
    idn_prefix = "SIMMCA"

    def __init__(self, name: str, params: SimMcaParameters) -> None:
        super().__init__(name, params)
        self.client = SimClient(name, params.url, timeout=params.timeout)

    @classmethod
    def from_config(cls, name: str, params: SimMcaParameters, context: Any) -> Self:
        return cls(name, params)

    async def check_instrument(self, idn: str) -> None:
        self.check_nbins(int(await self.client.ask("?NBIN")))

    async def hw_fetch_spectra(self) -> np.ndarray:
        command = f"READ {max(1, MCA_READ_BYTES // (4 * self.nbins))}"
        spectra = await self.client.ask_array(command, "u4")
        if spectra.ndim != 2 or (len(spectra) and spectra.shape[1] != self.nbins):
            raise DeviceError(
                self.name, f"sent spectra of shape {spectra.shape[1:]}, expected ({self.nbins},)"
            )
        return spectra.astype(np.uint32, copy=False)  # no copy on a little-endian host


# ---------------------------------------------------------------------- camera


class SimCameraParameters(SimAddress, CameraParameters):
    width: int = Field(128, ge=1)
    height: int = Field(96, ge=1)


class SimCamera(SimAcquisitionMixin, Camera):
    """The simulated camera (``SIMCAM``): it writes HDF5 files; we report references."""

    Parameters = SimCameraParameters
    idn_prefix = "SIMCAM"

    def __init__(self, name: str, params: SimCameraParameters) -> None:
        super().__init__(name, params)
        self.client = SimClient(name, params.url, timeout=params.timeout)
        self.file: str | None = None

    @classmethod
    def from_config(cls, name: str, params: SimCameraParameters, context: Any) -> Self:
        return cls(name, params)

    async def check_instrument(self, idn: str) -> None:
        width, height = (int(v) for v in (await self.client.ask("?SIZE")).split())
        if (width, height) != (self.width, self.height):
            raise DeviceError(
                self.name,
                f"the camera's frames are {width} x {height} but the configuration says "
                f"width: {self.width}, height: {self.height}; fix the configuration",
            )

    async def before_prepare(self) -> None:
        if self.directory:
            await self.client.do(f"SAVE {self.directory} {self.prefix}")

    async def hw_start(self) -> None:
        await super().hw_start()
        self.file = await self.client.ask("?FILE") or None

    async def hw_fetch_references(self) -> np.ndarray:
        reply = await self.client.ask(f"READ {READ_MAX}")
        fields = reply.split(maxsplit=3)
        try:
            n = int(fields[0])
            if n == 0:
                return self.references("", "", 0, 0)
            first, dataset, file = int(fields[1]), fields[2], fields[3]
        except (IndexError, ValueError):
            raise ProtocolError(self.name, f"bad READ reply {reply!r}") from None
        return self.references(file, dataset, first, n)
