"""Publishing scan data into Redis: throughput and publish-to-reader latency.

Each figure is printed beside a baseline measured in the same run on the same redis-server
(its own, on a unix socket):

- per-point emits, 10 scalar channels, one emit per channel and point: channel values/s
  (target >= 200,000); baseline: raw redis-py, one pipelined XADD per value;
- batched numeric data (1D spectra): MB/s (target >= 80 % of the baseline); baseline: raw
  redis-py pipelined XADD of the same payloads (same entry sizes, pipelines of 64 entries);
- publish-to-reader latency, one point every ms, a reader in another process following with
  XREAD (the DataStore cursor): median and p99 in ms (target median <= 5 ms).

Every publisher figure is timed until the streams are sealed (``close()`` returned).

    python benchmarks/publish.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import numpy as np
import redis.asyncio as aredis
from _figures import figure, load, median, sized, spread

from blissng.acquisition import Channel, ChannelSpec
from blissng.data import ScanDocument, ScanPublisher
from blissng.redisdb import start_one

RESULTS: list[dict[str, Any]] = []


def report(
    metric: str, value: float, unit: str, baseline: float | None, target: str, note: str = ""
) -> None:
    """Collect a figure; all are printed at the end (the latency baseline comes last)."""
    RESULTS.append(
        {
            "metric": metric,
            "value": value,
            "unit": unit,
            "baseline": baseline,
            "target": target,
            "note": note,
        }
    )


def document(number: int) -> ScanDocument:
    return ScanDocument(session="bench", number=number, name="bench", save=False)


class NullSink:
    """Receives batches and drops them: the cost of Channel.emit alone (the ceiling)."""

    async def put(self, spec: ChannelSpec, index: int, batch: np.ndarray) -> None:
        pass

    async def end(self, spec: ChannelSpec, length: int) -> None:
        pass


async def emit_points(channels: list[Channel], npoints: int) -> None:
    value = np.float64(1.5)
    for _ in range(npoints):
        for channel in channels:
            await channel.emit(value)
        await anyio.lowlevel.checkpoint()  # an acquisition awaits something per point
    for channel in channels:
        await channel.end()


# The machine is shared: figures are medians of alternated rounds, ranges printed.
ROUNDS = sized(5, 1)


async def publish_points(url: str, npoints: int, number: int) -> tuple[float, float]:
    """(wall s, cpu s) to publish ``npoints`` x 10 scalars, until the streams are sealed."""
    channels = [Channel(ChannelSpec(f"c{i}", "float64")) for i in range(10)]
    t0, c0 = time.perf_counter(), time.process_time()
    async with ScanPublisher(url, document(number), channels) as pub:
        await emit_points(channels, npoints)
        await pub.close()
    return time.perf_counter() - t0, time.process_time() - c0


async def null_points(npoints: int) -> tuple[float, float]:
    channels = [Channel(ChannelSpec(f"c{i}", "float64")) for i in range(10)]
    for channel in channels:
        channel.subscribe(NullSink())
    t0, c0 = time.perf_counter(), time.process_time()
    await emit_points(channels, npoints)
    return time.perf_counter() - t0, time.process_time() - c0


async def raw_points(client: aredis.Redis, npoints: int) -> float:
    """One XADD per value, pipelined 10,000 at a time (a publisher without batching)."""
    payload = np.float64(1.5).tobytes()
    t0 = time.perf_counter()
    for start in range(0, npoints, 1000):
        pipe = client.pipeline(transaction=False)
        for index in range(start, min(start + 1000, npoints)):
            for c in range(10):
                pipe.xadd(f"raw:pp:{c}", {"n": 1, "d": payload}, id=f"{index}-1")
        await pipe.execute()
    elapsed = time.perf_counter() - t0
    await client.delete(*[f"raw:pp:{c}" for c in range(10)])
    return elapsed


async def per_point(url: str, npoints: int) -> None:
    values = npoints * 10
    client = aredis.Redis.from_url(url)
    pub: list[float] = []
    pub_cpu: list[float] = []
    null: list[float] = []
    null_cpu: list[float] = []
    raw: list[float] = []
    for round_ in range(ROUNDS):
        wall, cpu = await publish_points(url, npoints, 100 + round_)
        pub.append(values / wall)
        pub_cpu.append(values / cpu)
        wall, cpu = await null_points(npoints)
        null.append(values / wall)
        null_cpu.append(values / cpu)
        raw.append(values / (await raw_points(client, npoints // 4) * 4))
    await client.aclose()
    report("per_point_10_scalars", median(pub), "values/s", median(raw), ">= 200000",
           spread(pub, ",.0f"))  # fmt: skip
    report(
        "per_point_cpu", median(pub_cpu), "values/cpu-s", median(null_cpu),
        "baseline: Channel.emit into a null sink", spread(pub_cpu, ",.0f"),
    )  # fmt: skip
    report("per_point_emit_ceiling", median(null), "values/s", None, "-", spread(null, ",.0f"))


async def batched(url: str, nbatches: int) -> None:
    nchannels, rows, width = 4, 100, 1024
    batch = np.random.default_rng(0).random((rows, width))  # 800 kB per batch
    total_bytes = nchannels * nbatches * batch.nbytes
    client = aredis.Redis.from_url(url)
    pub: list[float] = []
    raw: list[float] = []
    ratio: list[float] = []
    pub_cpu: list[float] = []
    raw_cpu: list[float] = []
    for round_ in range(ROUNDS):
        channels = [Channel(ChannelSpec(f"s{i}", "float64", (width,))) for i in range(nchannels)]
        t0, c0 = time.perf_counter(), time.process_time()
        async with ScanPublisher(url, document(200 + round_), channels) as publisher:
            for _ in range(nbatches):
                for channel in channels:
                    await channel.emit(batch)
                await anyio.lowlevel.checkpoint()
            await publisher.close()
        pub.append(total_bytes / (time.perf_counter() - t0) / 1e6)
        pub_cpu.append(total_bytes / (time.process_time() - c0) / 1e6)
        await client.delete(*publisher.stream_keys.values())

        payload = batch.tobytes()
        t0, c0 = time.perf_counter(), time.process_time()
        pipe = client.pipeline(transaction=False)
        queued = 0
        for b in range(nbatches):
            for c in range(nchannels):
                pipe.xadd(f"raw:b:{c}", {"n": rows, "d": payload}, id=f"{b * rows}-1")
                queued += 1
                if queued == 64:
                    await pipe.execute()
                    pipe = client.pipeline(transaction=False)
                    queued = 0
        if queued:
            await pipe.execute()
        raw.append(total_bytes / (time.perf_counter() - t0) / 1e6)
        raw_cpu.append(total_bytes / (time.process_time() - c0) / 1e6)
        ratio.append(100 * pub[-1] / raw[-1])  # this round's publisher against its raw run
        await client.delete(*[f"raw:b:{c}" for c in range(nchannels)])
    await client.aclose()
    report("batched_spectra", median(pub), "MB/s", median(raw), ">= 80 % of baseline",
           spread(pub, ".0f"))  # fmt: skip
    report("batched_vs_raw", median(ratio), "%", 100.0, ">= 80", spread(ratio, ".0f"))
    report(
        "batched_cpu", median(pub_cpu), "MB/cpu-s", median(raw_cpu),
        "client CPU only (the machine may be shared)", spread(pub_cpu, ".0f"),
    )  # fmt: skip


READER = textwrap.dedent(
    """
    import json, sys, time
    from blissng.data import SyncDataStore

    with SyncDataStore(sys.argv[1]) as store:
        follow = store.follow("bench")
        print("ready", flush=True)
        scan = next(follow)
        latencies = []
        for batch in scan["t"].cursor():
            now = time.monotonic()
            latencies.extend((now - batch).tolist())
        print(json.dumps(latencies), flush=True)
    """
)


async def latency(url: str, npoints: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "reader.py"
        script.write_text(READER)
        proc = subprocess.Popen(
            [sys.executable, str(script), url], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        ready = await anyio.to_thread.run_sync(proc.stdout.readline)
        assert ready.strip() == "ready", ready
        await anyio.sleep(0.2)  # the reader blocks on XREAD from its starting point
        channel = Channel(ChannelSpec("t", "float64"))
        async with ScanPublisher(url, document(3), [channel]) as pub:
            for _ in range(npoints):
                await channel.emit(time.monotonic())
                await anyio.sleep(0.001)
            await pub.close()
        line = await anyio.to_thread.run_sync(proc.stdout.readline)
        proc.wait(30)
    values = sorted(1000 * v for v in json.loads(line))
    median_ms = statistics.median(values)
    p99 = values[int(0.99 * (len(values) - 1))]
    # Baseline: the same path without the publisher, XADD per point and XREAD BLOCK.
    report("latency_median", median_ms, "ms", None, "<= 5")
    report("latency_p99", p99, "ms", None, "-")


async def raw_latency(url: str, npoints: int) -> None:
    """Baseline latency: one XADD per point straight from redis-py, a reader in this loop."""
    writer = aredis.Redis.from_url(url)
    reader = aredis.Redis.from_url(url)
    latencies: list[float] = []

    async def read() -> None:
        last = "0-0"
        while len(latencies) < npoints:
            found = await reader.xread({"raw:lat": last}, block=1000)
            for _key, entries in found:
                for entry_id, fields in entries:
                    last = entry_id
                    latencies.append(time.monotonic() - float(fields[b"t"]))

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        for i in range(npoints):
            await writer.xadd("raw:lat", {"t": repr(time.monotonic())}, id=f"{i}-1")
            await anyio.sleep(0.001)
    await writer.delete("raw:lat")
    await writer.aclose()
    await reader.aclose()
    median_ms = statistics.median(latencies) * 1000
    for row in RESULTS:
        if row["metric"] == "latency_median":
            row["baseline"] = median_ms
        if row["metric"] == "latency_p99":
            row["baseline"] = sorted(latencies)[int(0.99 * (len(latencies) - 1))] * 1000


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="blissng-bench-") as tmp:
        server = start_one("data", Path(tmp) / "redis", persistent=False, maxmemory="2gb")
        try:
            sections = [
                (per_point, sized(10_000, 200)),
                (batched, sized(50, 2)),
                (latency, sized(2000, 50)),
                (raw_latency, sized(2000, 50)),
            ]
            for section, size in sections:
                try:
                    await section(server.url, size)
                except Exception as exc:  # a benchmark reports; the other figures still count
                    print(f"{section.__name__} FAILED (load {load():.1f}): {exc!r}")
        finally:
            server.stop()
    for row in RESULTS:
        figure(
            "publish", row["metric"], row["value"], row["unit"], baseline=row["baseline"],
            target=row["target"], note=row["note"],
        )  # fmt: skip


if __name__ == "__main__":
    anyio.run(main)
