"""Tango attributes as counters: ``TangoCounterController``.

One device, several attributes read together in one ``read_attributes`` call per sample.
Scalar attributes are sampling counters (``mode``: MEAN, INTEGRATE, SINGLE, LAST, STATS,
INTEGRATE_STATS, SAMPLES, as any sampling counter; default SINGLE: one read per point when
the count time is 0, else sampled during it). A spectrum attribute is a 1D counter: give its
``length``; its value at the end of the count time is taken.

.. code-block:: yaml

    - name: tcount
      class: TangoCounterController
      tango_name: id00/counter/1
      tango_host: tangohost:10000
      counters:
        - {name: tcounts, attribute: Counts, mode: MEAN}
        - {name: tspectrum, attribute: Spectrum, length: 256}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
from pydantic import Field

from blissng.devices import (
    DeviceError,
    SamplingControllerParameters,
    SamplingCounter,
    SamplingCounterController,
    SamplingCounterParameters,
    SamplingMode,
    sampling_counter,
)

from ._device import DEFAULT_TIMEOUT, TangoDevice


class TangoCounterParameters(SamplingCounterParameters):
    attribute: str | None = Field(None, description="the attribute (default: the name)")
    mode: SamplingMode = SamplingMode.SINGLE
    length: int | None = Field(None, ge=1, description="a spectrum attribute's length (1D)")


class TangoCounterControllerParameters(SamplingControllerParameters):
    tango_name: str
    tango_host: str | None = None
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0)
    counters: list[TangoCounterParameters]


class TangoCounterController(SamplingCounterController):
    """Attributes of one Tango device as counters; see the module docstring."""

    Parameters = TangoCounterControllerParameters

    def __init__(self, name: str, params: TangoCounterControllerParameters) -> None:
        super().__init__(name, sampling_period=params.sampling_period)
        self.device = TangoDevice(
            name, params.tango_name, params.tango_host, timeout=params.timeout
        )
        self.attributes: list[str] = []
        for counter in params.counters:
            fields = counter.model_dump(include={"mode", "unit", "nsamples", "length"})
            self.add_counter(sampling_counter(self, counter.name, **fields))
            self.attributes.append(counter.attribute or counter.name)
        self._connected = False

    @classmethod
    def from_config(cls, name: str, params: TangoCounterControllerParameters, context: Any) -> Self:
        return cls(name, params)

    async def connect(self) -> None:
        """Check that the attributes exist and have the declared shapes (once)."""
        if self._connected:
            return
        names = await self.device.attribute_names()
        for counter, attribute in zip(self.counters, self.attributes, strict=True):
            if attribute.lower() not in names:
                raise DeviceError(
                    self.name,
                    f"counter {counter.name}: {self.device.trl} has no attribute "
                    f"{attribute!r}; its attributes: {', '.join(sorted(names))}",
                )
            config = await self.device.attribute_config(attribute)
            spectrum = str(config.data_format) == "SPECTRUM"
            if spectrum and not counter.shape:
                raise DeviceError(
                    self.name,
                    f"counter {counter.name}: {attribute} is a spectrum attribute "
                    f"(up to {config.max_dim_x} values): give its length in the "
                    "configuration (length: N)",
                )
            if not spectrum and counter.shape:
                raise DeviceError(
                    self.name,
                    f"counter {counter.name}: {attribute} is a {config.data_format} "
                    "attribute, not a spectrum: remove length from its configuration",
                )
            if counter.unit is None and config.unit not in ("", "No unit", None):
                counter.unit = str(config.unit)
        self._connected = True

    async def close(self) -> None:
        self._connected = False
        await self.device.close()

    async def read_all(self, counters: Sequence[SamplingCounter]) -> Sequence[Any]:
        values = await self.device.read_many(self.attributes)
        for counter, value in zip(self.counters, values, strict=True):
            if counter.shape and np.shape(value) != counter.shape:
                raise DeviceError(
                    self.name,
                    f"counter {counter.name}: read {np.shape(value)} values, configured "
                    f"length {counter.shape[0]}",
                )
        return values


__all__ = ["TangoCounterController"]
