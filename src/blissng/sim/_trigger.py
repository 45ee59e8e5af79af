"""``SimTriggerBox``: the client of the simulated trigger box, a ``LatchingTriggerSource``.

The box emits trains of pulses on each enabled output (the scaler, MCA and camera of its
simulator host, which then acquire in ``EXT`` mode): ``npoints`` pulses every ``period``
seconds, from the start or from the instant an encoder passes a start position, or one pulse
each time an encoder passes the next position of a grid. Its encoder inputs are the axes of
the host's motor controller; ``inputs`` in the configuration says which motor is wired to
which input, and the encoders of the inputs a scan asks for are latched with every pulse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import anyio
import numpy as np
from pydantic import Field

from blissng.comm import ProtocolError
from blissng.devices import DeviceError, PulseTrain

from ._client import SimClient
from ._detectors import SimAddress


class SimTriggerBoxParameters(SimAddress):
    outputs: dict[str, bool] | None = Field(
        None, description="output name -> enabled (default: as the box is)"
    )
    inputs: dict[str, int] = Field(
        default_factory=dict,
        description="motor name -> the encoder input wired to it (1..N, the box's inputs)",
    )


READ_MAX = 20_000  # latched pulses asked per READ


class SimTriggerBox:
    """Implements :class:`blissng.devices.LatchingTriggerSource`."""

    Parameters = SimTriggerBoxParameters
    polling_interval = 0.005

    def __init__(self, name: str, params: SimTriggerBoxParameters) -> None:
        self.name = name
        self.params = params
        self.client = SimClient(name, params.url, timeout=params.timeout)
        self._connected = False
        self._npoints = 0
        self._period = 0.0  # 0: the end of the train is not known in advance
        self._started = 0.0
        self._columns = 1

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
        count = int(await self.client.ask("?INP", expect=r"\d+"))
        wrong = {m: i for m, i in self.params.inputs.items() if not 1 <= i <= count}
        if wrong:
            raise DeviceError(
                self.name,
                f"has encoder inputs 1..{count}, but the configuration wires "
                + ", ".join(f"{m} to input {i}" for m, i in wrong.items()),
            )
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
        await self.client.do("LATCH")
        await self.client.do(f"PULSES {npoints} {period:.9g} {width:.9g}")
        self._npoints, self._period, self._columns = npoints, period, 1

    async def start_pulses(self) -> None:
        await self.client.do("START")
        self._started = anyio.current_time()

    async def pulses_emitted(self) -> int:
        return int(await self.client.ask("?CNT"))

    # ------------------------------------------------------------------ LatchingTriggerSource

    def input_of(self, axis: str) -> int | None:
        return self.params.inputs.get(axis)

    async def prepare_train(self, train: PulseTrain, latch: Sequence[int] = ()) -> None:
        if train.npulses < 1:
            raise DeviceError(self.name, f"needs at least one pulse, not {train.npulses}")
        await self.connect()
        if await self.client.ask("?STA") != "IDLE":
            await self.client.do("STOP")
        self._columns = 1 + len(latch)
        await self.client.do(" ".join(["LATCH", *(str(i) for i in latch)]))
        if train.position_based:
            command = (
                f"PPULSES {train.npulses} {train.input} {train.start:.12g} {train.step:.12g} "
                f"{train.width:.9g}"
            )
        else:
            command = f"PULSES {train.npulses} {train.period:.9g} {train.width:.9g}"
            if train.start is not None:
                command += f" {train.input} {train.start:.12g}"
        await self.client.do(command)
        self._npoints = train.npulses
        self._period = 0.0 if train.position_based or train.start is not None else train.period

    async def read_latched(self) -> np.ndarray:
        latched = await self.client.ask_array(f"READ {READ_MAX}", "f8")
        if latched.ndim != 2 or (len(latched) and latched.shape[1] != self._columns):
            raise ProtocolError(
                self.name, f"READ sent {latched.shape[1:]} columns, expected {self._columns}"
            )
        return latched.copy()

    async def wait_done(self) -> None:
        """Return when the last pulse has been emitted (a train that waits for positions is
        polled: its end depends on the motion)."""
        if self._period:
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
