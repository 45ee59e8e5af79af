"""PVs as counters: ``EpicsCounterController``.

Scalar PVs are sampling counters (``mode`` as any sampling counter; default SINGLE); a
waveform PV is a 1D counter: give its ``length``, its value at the end of the count is taken.
The PVs of one controller are read concurrently, Channel Access and PV Access alike.

.. code-block:: yaml

    - name: ecount
      class: EpicsCounterController
      counters:
        - {name: edet, pv: "BL:sc:S3", mode: MEAN}
        - {name: espectrum, pv: "BL:spectrum", length: 256}
        - {name: pdet, pv: "pva://BL:pva:det"}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import anyio
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

from ._pv import DEFAULT_TIMEOUT, EpicsPV, pv_for


class EpicsCounterParameters(SamplingCounterParameters):
    pv: str = Field(description="the PV (ca:// or pva:// prefix; Channel Access without)")
    mode: SamplingMode = SamplingMode.SINGLE
    length: int | None = Field(None, ge=1, description="a waveform's length (1D counter)")


class EpicsCounterControllerParameters(SamplingControllerParameters):
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0)
    counters: list[EpicsCounterParameters]


class EpicsCounterController(SamplingCounterController):
    """PVs as counters; see the module docstring."""

    Parameters = EpicsCounterControllerParameters

    def __init__(self, name: str, params: EpicsCounterControllerParameters) -> None:
        super().__init__(name, sampling_period=params.sampling_period)
        self.pvs: list[EpicsPV] = []
        for counter in params.counters:
            fields = counter.model_dump(include={"mode", "unit", "nsamples", "length"})
            self.add_counter(sampling_counter(self, counter.name, **fields))
            self.pvs.append(pv_for(name, counter.pv, timeout=params.timeout))

    @classmethod
    def from_config(cls, name: str, params: EpicsCounterControllerParameters, context: Any) -> Self:
        return cls(name, params)

    async def close(self) -> None:
        for pv in self.pvs:
            await pv.close()

    async def read_all(self, counters: Sequence[SamplingCounter]) -> Sequence[Any]:
        pvs = self.pvs
        if len(pvs) == 1:
            values: list[Any] = [await pvs[0].get()]
        else:
            values = [None] * len(pvs)

            async def read(i: int) -> None:
                values[i] = await pvs[i].get()

            try:
                async with anyio.create_task_group() as tg:
                    for i in range(len(pvs)):
                        tg.start_soon(read, i)
            except ExceptionGroup as group:  # the first PV's error, as a single read says it
                raise group.exceptions[0] from None
        for counter, pv, value in zip(self.counters, pvs, values, strict=True):
            if counter.shape and np.shape(value) != counter.shape:
                raise DeviceError(
                    self.name,
                    f"counter {counter.name}: {pv.name} has {np.shape(value)} values, "
                    f"configured length {counter.shape[0]}",
                )
            if not counter.shape and np.ndim(value) != 0:
                raise DeviceError(
                    self.name,
                    f"counter {counter.name}: {pv.name} is a waveform of {np.size(value)} "
                    "values: give its length in the configuration (length: N)",
                )
        return values


__all__ = ["EpicsCounterController"]
