"""Clients of the simulated streaming devices: the buffered "good" one and the "bad" one.

- :class:`SimGoodDevice` acquires on its own clock into a big buffer and hands over many
  points per request (``READ`` -> one binary block): the way buffered instruments should be
  read. As an Acquirable it runs in hardware mode at ``1 / count_time`` points per second.
- :class:`SimBadDevice` streams tiny unbuffered packets on a wall-clock schedule and drops
  what its reader does not take in time. :meth:`SimBadDevice.read_packets` takes what has
  arrived, in chunks, with a checkpoint per chunk; gaps in the sequence numbers are drops.
"""

from __future__ import annotations

from typing import Any, Self

import anyio
import anyio.lowlevel
import numpy as np

from blissng.comm import ProtocolError
from blissng.devices import (
    AcquisitionParameters,
    Counter,
    CounterController,
    DetectorError,
    DeviceError,
    TriggerMode,
)

from ._client import SimClient
from ._detectors import SimAddress

READ_MAX = 1_000_000


class SimGoodDevice(CounterController):
    """The buffered simulator (``SIMGOOD``): point ``k`` has the value ``k``."""

    Parameters = SimAddress
    supported_trigger_modes = frozenset({TriggerMode.HARDWARE})

    def __init__(self, name: str, params: SimAddress) -> None:
        super().__init__(name)
        self.client = SimClient(name, params.url, timeout=params.timeout)
        self.add_counter(Counter("value", self, dtype="float64"))
        self._connected = False

    @classmethod
    def from_config(cls, name: str, params: SimAddress, context: Any) -> Self:
        return cls(name, params)

    async def connect(self) -> None:
        if not self._connected:
            idn = await self.client.ask("*IDN?")
            if not idn.startswith("SIMGOOD"):
                raise DeviceError(self.name, f"is not a SIMGOOD device (*IDN? -> {idn!r})")
            self._connected = True

    async def start_stream(self, rate_hz: float) -> None:
        await self.connect()
        await self.client.do(f"START {rate_hz:.9g}")

    async def stop_stream(self) -> None:
        await self.client.do("STOP")

    async def buffered(self) -> int:
        return int(await self.client.ask("?NPT"))

    async def overruns(self) -> int:
        return int(await self.client.ask("?OVR"))

    async def read_points(self, max_points: int = READ_MAX) -> np.ndarray:
        """Every buffered point (up to ``max_points``), in one request."""
        points = await self.client.ask_array(f"READ {max_points}", "f8")
        if points.ndim != 1:
            raise ProtocolError(self.name, f"READ sent points of shape {points.shape[1:]}")
        return points.astype(np.float64)

    # Acquirable (hardware mode: the device's own clock makes the points)
    async def prepare(self, params: AcquisitionParameters) -> None:
        await super().prepare(params)
        if not params.count_time > 0:
            raise DetectorError(self.name, "needs a count time > 0 (1 / its point rate)")

    async def start(self) -> None:
        await self.start_stream(1.0 / self.params.count_time)

    async def trigger(self) -> None:
        """Hardware mode only: the device's clock makes the points."""

    async def read(self) -> dict[str, np.ndarray]:
        values = await self.read_points()
        return {"value": values}

    async def stop(self) -> None:
        await self.stop_stream()

    async def close(self) -> None:
        self._connected = False
        await self.client.close()


PACKET = 25  # b"<seq:010d> <value:+.6e>\n"


class SimBadDevice:
    """The unbuffered streaming simulator (``SIMBAD``), read as fast as it sends."""

    Parameters = SimAddress

    def __init__(self, name: str, params: SimAddress) -> None:
        self.name = name
        self.client = SimClient(name, params.url, timeout=params.timeout)
        self._partial = b""
        self.received = 0
        self.gaps = 0  # packets missing from the sequence (dropped by the device)
        self._next_seq = 0

    @classmethod
    def from_config(cls, name: str, params: SimAddress, context: Any) -> Self:
        return cls(name, params)

    async def connect(self) -> None:
        idn = await self.client.ask("*IDN?")
        if not idn.startswith("SIMBAD"):
            raise DeviceError(self.name, f"is not a SIMBAD device (*IDN? -> {idn!r})")

    async def start(self, rate_hz: float | None = None, fifo: int | None = None) -> None:
        args = "" if rate_hz is None else f" {rate_hz:.9g}" + ("" if fifo is None else f" {fifo}")
        self._partial = b""
        self.received = self.gaps = self._next_seq = 0
        await self.client.do("START" + args)

    async def read_packets(self, timeout: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The packets that arrived (waits for at least one chunk): ``(seq, value)`` arrays."""
        chunk = await self.client.conn.read_some(timeout=timeout)
        data = self._partial + chunk
        whole = len(data) - len(data) % PACKET
        self._partial = data[whole:]
        seqs, values = self._parse(data[:whole])
        await anyio.lowlevel.checkpoint()
        return seqs, values

    def _parse(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        lines = data.split(b"\n")[:-1] if data else []
        seqs = np.empty(len(lines), dtype=np.int64)
        values = np.empty(len(lines), dtype=np.float64)
        for i, line in enumerate(lines):
            try:
                seq, value = line.split()
                seqs[i], values[i] = int(seq), float(value)
            except ValueError:
                raise ProtocolError(self.name, f"bad packet {line[:40]!r}") from None
        if len(seqs):
            expected = self._next_seq
            self.gaps += int(seqs[0] - expected) + int(np.sum(np.diff(seqs) - 1))
            self._next_seq = int(seqs[-1]) + 1
            self.received += len(seqs)
        return seqs, values

    async def stop(self) -> tuple[int, int]:
        """Stop streaming; ``(produced, dropped)`` as the device counted them."""
        async with self.client.exchange() as conn:
            await conn.write("STOP")
            while True:  # packets still in flight come before the END line
                line = await conn.readline()
                if self._partial:  # the start of this line was read by read_packets
                    line, self._partial = self._partial.decode() + line, b""
                if line.startswith("END"):
                    break
                self._parse(line.encode() + b"\n")
        fields = line.split()
        if len(fields) != 3:
            raise ProtocolError(self.name, f"bad END line {line!r}", command="STOP")
        return int(fields[1]), int(fields[2])

    async def close(self) -> None:
        await self.client.close()
