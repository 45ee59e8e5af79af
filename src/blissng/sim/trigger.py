"""``SimTriggerBox``: the client of the simulated trigger box, a ``TriggerSource``.

The box emits ``npoints`` pulses, one every ``period`` seconds, on each enabled output (the
scaler, MCA and camera of its simulator host), which then acquire in ``EXT`` mode.
"""

from __future__ import annotations

from typing import Any, Self

import anyio
from pydantic import Field

from blissng.devices.errors import DeviceError

from .client import SimClient
from .detectors import SimAddress


class SimTriggerBoxParameters(SimAddress):
    outputs: dict[str, bool] | None = Field(
        None, description="output name -> enabled (default: as the box is)"
    )


class SimTriggerBox:
    """Implements :class:`blissng.devices.protocols.TriggerSource`."""

    Parameters = SimTriggerBoxParameters
    polling_interval = 0.005

    def __init__(self, name: str, params: SimTriggerBoxParameters) -> None:
        self.name = name
        self.params = params
        self.client = SimClient(name, params.url, timeout=params.timeout)
        self._connected = False
        self._npoints = 0
        self._period = 0.0
        self._started = 0.0

    @classmethod
    def from_config(cls, name: str, params: SimTriggerBoxParameters, context: Any) -> Self:
        return cls(name, params)

    def __repr__(self) -> str:
        return f"<SimTriggerBox {self.name}>"

    async def connect(self) -> None:
        if self._connected:
            return
        idn = await self.client.ask("*IDN?")
        if not idn.startswith("SIMTRIG"):
            raise DeviceError(self.name, f"is not a SIMTRIG trigger box (*IDN? -> {idn!r})")
        for output, enabled in (self.params.outputs or {}).items():
            await self.client.do(f"OUT {output} {'ON' if enabled else 'OFF'}")
        self._connected = True

    async def outputs(self) -> dict[str, bool]:
        await self.connect()
        reply = await self.client.ask("?OUT")
        pairs = (item.rsplit(":", 1) for item in reply.split())
        return {name: state == "ON" for name, state in pairs}

    async def set_output(self, output: str, enabled: bool) -> None:
        await self.connect()
        await self.client.do(f"OUT {output} {'ON' if enabled else 'OFF'}")

    # ------------------------------------------------------------------ TriggerSource

    async def prepare_pulses(self, npoints: int, period: float, width: float) -> None:
        if npoints < 1:
            raise DeviceError(self.name, f"needs at least one pulse, not {npoints}")
        if not 0 < width < period:
            raise DeviceError(
                self.name, f"pulse width {width:g} s must be > 0 and < the period {period:g} s"
            )
        await self.connect()
        if await self.client.ask("?STA") != "IDLE":
            await self.client.do("STOP")
        await self.client.do(f"PULSES {npoints} {period:.9g} {width:.9g}")
        self._npoints, self._period = npoints, period

    async def start_pulses(self) -> None:
        await self.client.do("START")
        self._started = anyio.current_time()

    async def pulses_emitted(self) -> int:
        return int(await self.client.ask("?CNT"))

    async def wait_done(self) -> None:
        """Return when the last pulse has been emitted."""
        end = self._started + self._npoints * self._period
        remaining = end - anyio.current_time()
        if remaining > 2 * self.polling_interval:
            await anyio.sleep(remaining - 2 * self.polling_interval)
        while await self.client.ask("?STA") != "IDLE":  # noqa: ASYNC110 - polls the device
            await anyio.sleep(self.polling_interval)

    async def stop(self) -> None:
        await self.client.do("STOP")

    async def close(self) -> None:
        self._connected = False
        await self.client.close()
