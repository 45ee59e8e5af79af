"""A scan run by the acquisition engine appears in Redis as docs/data-model.md says.

The chain (motor master -> timer -> a counter controller) emits into its channels; the
publisher is their sink; the test reads Redis with redis-py and the documented layout only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pytest
import redis.asyncio as aredis

from blissng.acquisition import (
    AcquirableSlave,
    AcquisitionChain,
    MotorStepMaster,
    SoftwareTimerMaster,
)
from blissng.data import ScanDocument, ScanPublisher
from blissng.devices import AcquisitionParameters

pytestmark = pytest.mark.anyio


class Counter:
    def __init__(self, name: str, dtype: str, shape: tuple[int, ...] = ()) -> None:
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.unit: str | None = "cts"


class Controller:
    """Counts the triggers; each reading is a function of the trigger number."""

    name = "ctrl"

    def __init__(self) -> None:
        self.counters = [Counter("diode", "float32"), Counter("spectrum", "uint16", (8,))]
        self.n = 0

    async def prepare(self, params: AcquisitionParameters) -> None:
        self.n = 0

    async def start(self) -> None:
        pass

    async def trigger(self) -> None:
        self.n += 1

    async def read(self) -> Mapping[str, np.ndarray]:
        return {
            "diode": np.array([self.n * 1.5], dtype="float32"),
            "spectrum": np.full((1, 8), self.n, dtype="uint16"),
        }

    async def wait_ready(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class Motor:
    def __init__(self, name: str) -> None:
        self.name = name
        self.position = 0.0

    async def read_position(self) -> float:
        return self.position

    async def move(self, target: float, wait: bool = True) -> None:
        self.position = target

    async def wait_move(self) -> None:
        pass

    async def stop(self) -> None:
        pass


async def test_engine_scan_in_redis_as_documented(redis_urls):
    npoints = 25
    positions = np.linspace(0, 2, npoints)
    chain = AcquisitionChain()
    master = MotorStepMaster([(Motor("m1"), positions)])
    timer = SoftwareTimerMaster(0.0, npoints)
    chain.add(master, timer)
    chain.add(timer, AcquirableSlave(Controller()))
    document = ScanDocument(session="demo", number=3, name="ascan", npoints=npoints, save=False)
    async with ScanPublisher(redis_urls.data, document, chain.channels) as pub:
        await pub.set_state("started")
        await chain.run()
        await pub.set_state("stopped")
        await pub.close()

    client = aredis.Redis.from_url(redis_urls.data)
    try:
        doc = json.loads(await client.hget(f"blissng:scan:{pub.scan_id}", "doc"))
        data = {}
        for name, channel in doc["channels"].items():
            entries = await client.xrange(channel["key"])
            *points, seal = entries
            assert seal == (f"{npoints}-1".encode(), {b"end": str(npoints).encode()})
            parts, expected = [], 0
            for entry_id, fields in points:
                assert entry_id == f"{expected}-1".encode()
                n = int(fields[b"n"])
                parts.append(
                    np.frombuffer(fields[b"d"], channel["dtype"]).reshape(n, *channel["shape"])
                )
                expected += n
            data[name] = np.concatenate(parts)
    finally:
        await client.aclose()
    motor = next(name for name in data if name.endswith("m1"))
    np.testing.assert_allclose(data[motor], positions)
    diode = next(name for name in data if name.endswith("diode"))
    np.testing.assert_array_equal(data[diode], np.arange(1, npoints + 1, dtype="f4") * 1.5)
    spectrum = next(name for name in data if name.endswith("spectrum"))
    assert data[spectrum].shape == (npoints, 8)
    np.testing.assert_array_equal(data[spectrum][:, 0], np.arange(1, npoints + 1))
    assert doc["channels"][diode]["unit"] == "cts"
