"""HDF5 writer throughput beside raw h5py, in the same run: scalar points/s and MCA MB/s.

Issue 16's goal: the writer at >= 50 % of **raw h5py appends** of the same data in the same
run. Figures per kind of data:

- **drain**: the scan is published into a private embedded Redis first, then the writer
  service starts and writes it: the time from the writer's start to "written" (found, read
  from Redis, written, flushed, fsync'ed, acknowledged, finished, linked, marked written).
  That is the writer's own throughput, the figure the goal is about.
- **fixed cost**: the same for a scan of one point: what every scan costs whatever its size
  (the service's start, the file and its entry created, the end, the link, the marks).
- **live**: the writer runs while the scan is published at full speed: the time from the
  first point to "written", the writer's lag when the scan ends and the drain after it.

Baselines, in the same round, on the same disk, with the writer's chunk shapes: raw h5py
appending the same arrays in the publisher's batches (``resize`` + write per batch, then
``flush`` and ``fsync``: what a writer following a live stream batch by batch does; the
issue's baseline), and raw h5py writing each array in one ``create_dataset(data=...)`` then
``flush`` (no fsync: a copy into the page cache, the most a writer could hope for). Each
round's writer figure is compared with the baselines measured just before and just after it
(their mean): on a shared machine a baseline moves by 2-4x from one second to the next. The
figures of merit are the medians of those ratios (``spread`` shows the range).

    python benchmarks/writer.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import anyio
import h5py
import numpy as np
import redis.asyncio as aredis

sys.path.insert(0, str(Path(__file__).parent))
from _figures import figure, load, median, sized, spread

from blissng.acquisition import Channel, ChannelSpec
from blissng.data import ScanDocument, ScanPublisher
from blissng.data import keys as data_keys
from blissng.redisdb import start_redis
from blissng.writer import WriterService
from blissng.writer._nexus import chunk_shape  # the writer's chunks, for the h5py baseline

BENCHMARK = "writer"
ROUNDS = sized(5, 1)
SCALARS = 10
NPOINTS = sized(100_000, 200)
SCALAR_BATCH = 100  # points per emit (a 10 kHz scan publishes ~80 per 8 ms flush)
MCA_POINTS = sized(2_000, 20)
MCA_BINS = 4096
MCA_BATCH = 50


async def publish(url: str, folder: Path, number: int, specs, arrays, batch: int) -> str:
    document = ScanDocument(
        session="bench", number=number, name="loopscan", path=str(folder / "bench" / "bench.h5")
    )
    channels = [Channel(spec) for spec in specs]
    async with ScanPublisher(url, document, channels) as publisher:
        for start in range(0, len(arrays[0]), batch):
            for channel, array in zip(channels, arrays, strict=True):
                await channel.emit(array[start : start + batch])
        for channel in channels:
            await channel.end()
        await publisher.close("success")
    return publisher.scan_id


async def wait_written(client: aredis.Redis, scan_id: str) -> None:
    while await client.hget(data_keys.ack_key(scan_id), "written") != b"1":
        await anyio.sleep(0.002)


async def drain(url: str, folder: Path, number: int, specs, arrays, batch: int) -> float:
    """Seconds the writer takes to write a scan already in Redis."""
    client = aredis.Redis.from_url(url)
    try:
        await client.flushdb()  # the writer finds this scan only (no earlier round to replay)
        scan_id = await publish(url, folder, number, specs, arrays, batch)
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(WriterService(url).run)
            await wait_written(client, scan_id)
            elapsed = time.perf_counter() - started
            tg.cancel_scope.cancel()
        return elapsed
    finally:
        await client.aclose()


async def live(url: str, folder: Path, number: int, specs, arrays, batch: int):
    """(first point -> written, points not on disk when the scan ends, drain after its end)."""
    client = aredis.Redis.from_url(url)
    try:
        await client.flushdb()
        async with anyio.create_task_group() as tg:
            tg.start_soon(WriterService(url).run)
            started = time.perf_counter()
            scan_id = await publish(url, folder, number, specs, arrays, batch)
            closed = time.perf_counter()
            acked = await client.hgetall(data_keys.ack_key(scan_id))
            on_disk = min((int(acked.get(s.name.encode(), 0)) for s in specs), default=0)
            await wait_written(client, scan_id)
            done = time.perf_counter()
            tg.cancel_scope.cancel()
        return done - started, len(arrays[0]) - on_disk, done - closed
    finally:
        await client.aclose()


def raw_one_call(path: Path, arrays) -> float:
    started = time.perf_counter()
    with h5py.File(path, "w") as f:
        for i, array in enumerate(arrays):
            f.create_dataset(f"c{i}", data=array, chunks=True, maxshape=(None, *array.shape[1:]))
        f.flush()
    elapsed = time.perf_counter() - started
    path.unlink()
    return elapsed


def raw_appends(path: Path, arrays, batch: int) -> float:
    """The issue's baseline: appends of the publisher's batches, resize + write each, then
    flush + fsync; the writer's chunk shapes (h5py's guess for a spectrum, 32 x 256, made
    this baseline 1.5x slower)."""
    started = time.perf_counter()
    with h5py.File(path, "w") as f:
        datasets = [
            f.create_dataset(f"c{i}", shape=(0, *a.shape[1:]), maxshape=(None, *a.shape[1:]),
                             dtype=a.dtype, chunks=chunk_shape(a.dtype, a.shape[1:]))
            for i, a in enumerate(arrays)
        ]  # fmt: skip
        for start in range(0, len(arrays[0]), batch):
            for dataset, array in zip(datasets, arrays, strict=True):
                part = array[start : start + batch]
                dataset.resize(start + len(part), axis=0)
                dataset[start:] = part
        f.flush()
        os.fsync(f.id.get_vfd_handle())
    elapsed = time.perf_counter() - started
    path.unlink()
    return elapsed


async def measure(url: str, folder: Path, kind: str, specs, arrays, batch: int, per) -> None:
    """Rounds alternating the writer (drain, fixed cost, live) and the raw baselines."""
    amount, unit = per
    drains, fixed, lives, lags, tails, ones, appends = [], [], [], [], [], [], []
    of_appends, of_one = [], []
    raw = folder / "raw.h5"
    one_point = [array[:1] for array in arrays]
    for number in range(ROUNDS):
        where = folder / kind / str(number)  # a data set per scan: each is scan number 1
        before = raw_appends(raw, arrays, batch), raw_one_call(raw, arrays)
        drains.append(await drain(url, where / "drain", 1, specs, arrays, batch))
        after = raw_appends(raw, arrays, batch), raw_one_call(raw, arrays)
        appends += [before[0], after[0]]
        ones += [before[1], after[1]]
        of_appends.append(100 * (before[0] + after[0]) / 2 / drains[-1])
        of_one.append(100 * (before[1] + after[1]) / 2 / drains[-1])
        fixed.append(await drain(url, where / "one", 1, specs, one_point, batch))
        elapsed, lag, tail = await live(url, where / "live", 1, specs, arrays, batch)
        lives.append(elapsed)
        lags.append(lag)
        tails.append(tail)
    rate = [amount / t for t in drains]
    appended = amount / median(appends)
    one = amount / median(ones)
    figure(BENCHMARK, f"{kind}_writer", median(rate), unit, baseline=appended,
           target=">= 50 % of baseline", note=f"baseline: raw h5py appends of the same "
           f"batches (flush + fsync), same run; {spread(rate)}")  # fmt: skip
    figure(BENCHMARK, f"{kind}_writer_share_of_appends", median(of_appends), "% of raw",
           baseline=100, target=">= 50",
           note=f"round by round; {spread(of_appends, '.0f')}")  # fmt: skip
    figure(BENCHMARK, f"{kind}_writer_share_of_one_call", median(of_one), "% of raw",
           baseline=100, target=None, note=f"raw h5py in one call per channel, no fsync "
           f"({one:.3g} {unit}); round by round; {spread(of_one, '.0f')}")  # fmt: skip
    fixed_ms = [1000 * t for t in fixed]
    figure(BENCHMARK, f"{kind}_writer_fixed_cost", median(fixed_ms), "ms per scan",
           baseline=None, target=None, note=f"a scan of one point, writer start to "
           f"written; {spread(fixed_ms)}")  # fmt: skip
    beyond = median(drains) - median(fixed)
    if beyond > 0:  # what each further point costs, the fixed cost set apart
        figure(BENCHMARK, f"{kind}_writer_beyond_fixed_cost", amount / beyond, unit,
               baseline=appended, target=None, note=f"{100 * amount / beyond / appended:.0f} %"
               f" of raw appends: the drain less the fixed cost, medians")  # fmt: skip
    live_rate = [amount / t for t in lives]
    figure(BENCHMARK, f"{kind}_live", median(live_rate), unit, baseline=appended, target=None,
           note=f"published and written at once; {spread(live_rate)}")  # fmt: skip
    figure(BENCHMARK, f"{kind}_lag_at_scan_end", median(lags), "points", baseline=0,
           target=None, note=f"{spread(lags)}")  # fmt: skip
    figure(BENCHMARK, f"{kind}_drain_after_scan_end", median(tails), "s", baseline=0,
           target="<= 1", note=f"{spread(tails)}")  # fmt: skip


async def main() -> None:
    print(f"# writer benchmark, load average {load():.1f} at start")
    with tempfile.TemporaryDirectory(prefix="blissng-bench-") as tmp:
        folder = Path(tmp)
        stack = start_redis(folder / "redis", url=None)
        try:
            url = stack.urls.data
            scalars = [np.random.default_rng(i).random(NPOINTS) for i in range(SCALARS)]
            specs = [ChannelSpec(f"c{i}", "float64") for i in range(SCALARS)]
            await measure(url, folder, "scalar", specs, scalars, SCALAR_BATCH,
                          (NPOINTS, f"points/s ({SCALARS} channels)"))  # fmt: skip
            spectra = [np.random.default_rng(0).integers(0, 1000, (MCA_POINTS, MCA_BINS), "u4")]
            specs = [ChannelSpec("mca", "uint32", (MCA_BINS,))]
            await measure(url, folder, "mca", specs, spectra, MCA_BATCH,
                          (spectra[0].nbytes / 1e6, "MB/s"))  # fmt: skip
        finally:
            stack.stop()


if __name__ == "__main__":
    anyio.run(main)
