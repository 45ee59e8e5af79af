"""HDF5 writer throughput: scalar points/s, MCA MB/s, and the lag at the end of a scan.

A scan is published into a private embedded Redis at full speed while the writer service
follows it; the figure is the time from the first point to "written" (flushed, fsync'ed,
acknowledged, linked). Baseline: h5py writing the same arrays into a file in one call each,
in the same run (the floor the writer's chunked, acknowledged path is compared with).

    python benchmarks/writer.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import anyio
import h5py
import numpy as np
import redis.asyncio as aredis

sys.path.insert(0, str(Path(__file__).parent))
from _figures import figure

from blissng.acquisition.channels import Channel, ChannelSpec
from blissng.data import ScanDocument, ScanPublisher
from blissng.data import keys as data_keys
from blissng.redisdb import start_redis
from blissng.writer import WriterService

BENCHMARK = "writer"
NPOINTS = 10_000
SCALARS = 10
MCA_POINTS = 2_000
MCA_BINS = 4096


async def write_scan(url: str, folder: Path, number: int, specs, arrays, batch: int):
    client = aredis.Redis.from_url(url)
    lag_at_end = 0
    try:
        service = WriterService(url, flush_interval=0.2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.run)
            document = ScanDocument(
                session="bench", number=number, name="loopscan",
                path=str(folder / "bench" / "bench.h5"),
            )  # fmt: skip
            channels = [Channel(spec) for spec in specs]
            started = time.perf_counter()
            async with ScanPublisher(url, document, channels) as publisher:
                for start in range(0, len(arrays[0]), batch):
                    for channel, array in zip(channels, arrays, strict=True):
                        await channel.emit(array[start : start + batch])
                for channel in channels:
                    await channel.end()
                await publisher.close("success")
            # Points acquired but not yet on disk when the scan ends (channel furthest behind).
            acked = await client.hgetall(data_keys.ack_key(publisher.scan_id))
            on_disk = min((int(acked.get(s.name.encode(), 0)) for s in specs), default=0)
            lag_at_end = len(arrays[0]) - on_disk
            closed = time.perf_counter()
            while await client.hget(data_keys.ack_key(publisher.scan_id), "written") != b"1":
                await anyio.sleep(0.005)
            elapsed = time.perf_counter() - started
            drain = time.perf_counter() - closed
            tg.cancel_scope.cancel()
        return elapsed, lag_at_end, drain
    finally:
        await client.aclose()


def raw_h5py(folder: Path, arrays) -> float:
    started = time.perf_counter()
    with h5py.File(folder / "raw.h5", "w") as f:
        for i, array in enumerate(arrays):
            f.create_dataset(f"c{i}", data=array, chunks=True, maxshape=(None, *array.shape[1:]))
        f.flush()
    return time.perf_counter() - started


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="blissng-bench-") as tmp:
        folder = Path(tmp)
        stack = start_redis(folder / "redis", url=None)
        try:
            url = stack.urls.data
            scalars = [np.random.default_rng(i).random(NPOINTS) for i in range(SCALARS)]
            specs = [ChannelSpec(f"c{i}", "float64") for i in range(SCALARS)]
            elapsed, lag, drain = await write_scan(url, folder, 1, specs, scalars, batch=100)
            raw = raw_h5py(folder, scalars)
            figure(BENCHMARK, "scalar_values_per_s", SCALARS * NPOINTS / elapsed, "values/s",
                   baseline=SCALARS * NPOINTS / raw, target=">= 100000")  # fmt: skip
            figure(BENCHMARK, "scalar_points_per_s", NPOINTS / elapsed, "points/s",
                   baseline=NPOINTS / raw, target=None, note=f"({SCALARS} channels)")  # fmt: skip
            figure(BENCHMARK, "lag_at_scan_end", lag, "points", baseline=0, target=None,
                   note="(scan published at full speed)")  # fmt: skip
            figure(BENCHMARK, "drain_after_scan_end", drain, "s", baseline=0, target=None)

            spectra = [np.random.default_rng(0).integers(0, 1000, (MCA_POINTS, MCA_BINS), "u4")]
            specs = [ChannelSpec("mca", "uint32", (MCA_BINS,))]
            elapsed, _, _ = await write_scan(url, folder, 2, specs, spectra, batch=50)
            megabytes = spectra[0].nbytes / 2**20
            raw = raw_h5py(folder, spectra)
            figure(BENCHMARK, "mca_throughput", megabytes / elapsed, "MB/s",
                   baseline=megabytes / raw, target=None)  # fmt: skip
        finally:
            stack.stop()


if __name__ == "__main__":
    anyio.run(main)
