"""The writer service against a real Redis: follow, write, acknowledge, crash, fall back."""

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import h5py
import numpy as np
import pytest
import redis.asyncio as aredis

from blissng.acquisition import Channel, ChannelSpec
from blissng.data import DataStore, ScanDocument, ScanPublisher, unregister_fallback
from blissng.data import keys as data_keys
from blissng.testing import wait_until
from blissng.writer import EVENTS_STREAM, WriterService, install, scan_file_path

pytestmark = pytest.mark.anyio


def specs():
    return [
        ChannelSpec("m1", "float64", (), "mm", "m1", role="axis"),
        ChannelSpec("diode", "float32", (), "cts", "sim"),
        ChannelSpec("mca1:spectrum", "uint32", (32,), None, "mca1"),
    ]


def expected_points(n: int, offset: int = 0):
    index = np.arange(offset, offset + n)
    return {
        "m1": index * 0.5,
        "diode": (index * 3.0).astype("float32"),
        "mca1:spectrum": (index[:, None] + np.arange(32)).astype("uint32"),
    }


async def publish(channels, start, stop):
    values = expected_points(stop - start, start)
    for channel in channels:
        await channel.emit(values[channel.name])


def doc(tmp_path: Path, number: int, **kwargs) -> ScanDocument:
    return ScanDocument(
        session="writer_test",
        number=number,
        name="ascan",
        title=f"ascan m1 0 10 {number}",
        path=str(tmp_path / "data" / "sample_0001.h5"),
        motors=[{"name": "m1", "start": 0.0, "stop": 10.0}],
        **kwargs,
    )


def read_scan_file(document) -> dict[str, np.ndarray]:
    with h5py.File(scan_file_path(document), "r", locking=False) as f:
        entry = f[f"{document['number']}.1"]
        # Keyed by channel name: each dataset keeps its channel's full name (@channel).
        return {d.attrs["channel"]: d[()] for d in entry["measurement"].values()}


async def is_written(client, scan_id):
    return await client.hget(data_keys.ack_key(scan_id), "written") == b"1"


async def run_scan(url, document, npoints=50, batch=7):
    channels = [Channel(spec) for spec in specs()]
    async with ScanPublisher(url, document, channels) as publisher:
        await publisher.set_state("started")
        for start in range(0, npoints, batch):
            await publish(channels, start, min(npoints, start + batch))
        for channel in channels:
            await channel.end()
        await publisher.close("success")
    return publisher.scan_id


@pytest.mark.timeout(60)
async def test_writer_follows_a_scan_and_writes_what_was_acquired(redis_urls, tmp_path):
    client = aredis.Redis.from_url(redis_urls.data)
    service = WriterService(redis_urls.data, flush_interval=0.1)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.run)
            scan_id = await run_scan(redis_urls.data, doc(tmp_path, 1), npoints=50)
            await wait_until(lambda: is_written(client, scan_id), timeout=20)
            tg.cancel_scope.cancel()
        async with DataStore(redis_urls.data) as store:
            view = await store.get_scan(scan_id)
            on_disk = read_scan_file(view.info)
            for name, channel in view.channels.items():
                np.testing.assert_array_equal(on_disk[name], await channel.get(0))
        np.testing.assert_array_equal(on_disk["diode"], expected_points(50)["diode"])
        ack = await client.hgetall(data_keys.ack_key(scan_id))
        assert ack[b"diode"] == b"50" and ack[b"mca1:spectrum"] == b"50"
        # The written scan now has its TTL, and is linked from the data set file.
        assert 0 < await client.ttl(data_keys.channel_key(scan_id, "diode")) <= 300
        with h5py.File(tmp_path / "data" / "sample_0001.h5", "r", locking=False) as master:
            assert list(master) == ["1.1"]
            assert master["1.1/measurement/diode"].shape == (50,)
    finally:
        await client.aclose()


@pytest.mark.timeout(60)
async def test_reader_falls_back_on_the_file_after_expiry(redis_urls, tmp_path):
    client = aredis.Redis.from_url(redis_urls.data)
    fallback = install(redis_urls.data)
    try:
        async with anyio.create_task_group() as tg:
            service = WriterService(redis_urls.data, flush_interval=0.1)
            tg.start_soon(service.run)
            scan_id = await run_scan(redis_urls.data, doc(tmp_path, 2), npoints=20)
            await wait_until(lambda: is_written(client, scan_id), timeout=20)
            tg.cancel_scope.cancel()
        # As if the TTL ran out: every key of the scan leaves Redis.
        keys = [k async for k in client.scan_iter(match=f"blissng:scan:{scan_id}*")]
        await client.delete(*keys)
        async with DataStore(redis_urls.data) as store:
            view = await store.get_scan(scan_id)
            values = await view.channels["diode"].get(0, 20)
        np.testing.assert_array_equal(values, expected_points(20)["diode"])
    finally:
        unregister_fallback(fallback)
        await client.aclose()


@pytest.mark.timeout(60)
async def test_an_aborted_loopscan_whose_entry_was_left_half_made_is_written(redis_urls, tmp_path):
    """The writer was stopped while it created the entry of a loopscan being aborted: the
    next writer completes the entry and writes the scan (it failed on every try with
    KeyError "'elapsed_time' doesn't exist", reported on the ack, never written)."""
    client = aredis.Redis.from_url(redis_urls.data)
    loopscan = [
        ChannelSpec("timer:elapsed_time", "float64", (), "s", "timer", role="time"),
        ChannelSpec("timer:epoch", "float64", (), "s", "timer", role="time"),
        ChannelSpec("sim:diode", "float64", (), None, "sim"),
    ]
    document = ScanDocument(
        session="writer_test", number=7, name="loopscan", title="loopscan 100000 0.01",
        path=str(tmp_path / "data" / "sample_0001.h5"),
    )  # fmt: skip
    channels = [Channel(spec) for spec in loopscan]
    try:
        async with ScanPublisher(redis_urls.data, document, channels) as publisher:
            for channel in channels:
                await channel.emit(np.arange(3.0))
            path = scan_file_path({"path": document.path, "number": 7})
            path.parent.mkdir(parents=True)
            with h5py.File(path, "w") as half_made:
                entry = half_made.create_group("7.1")
                entry.attrs["blissng_scan_id"] = publisher.scan_id
                entry.create_group("measurement")
            await publisher.close("aborted", "aborted by the user")
        async with anyio.create_task_group() as tg:
            tg.start_soon(WriterService(redis_urls.data, flush_interval=0.1).run)
            await wait_until(lambda: is_written(client, publisher.scan_id), timeout=20)
            tg.cancel_scope.cancel()
        ack = await client.hgetall(data_keys.ack_key(publisher.scan_id))
        assert b"error" not in ack and ack[b"timer:elapsed_time"] == b"3"
        with h5py.File(path, "r", locking=False) as f:
            np.testing.assert_array_equal(f["7.1/measurement/elapsed_time"][()], [0, 1, 2])
            assert f["7.1"].attrs["end_reason"] == "aborted"
    finally:
        await client.aclose()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def start_writer_process(url: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "blissng.writer", "--redis", url, "--log-level", "WARNING"],
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_writer_killed_mid_scan_resumes_to_an_identical_file(redis_urls, tmp_path):
    client = aredis.Redis.from_url(redis_urls.data)
    writer = start_writer_process(redis_urls.data)
    try:
        # An earlier scan, complete: its file must never be touched again.
        first_id = await run_scan(redis_urls.data, doc(tmp_path, 1), npoints=10)
        await wait_until(lambda: is_written(client, first_id), timeout=20)
        first = scan_file_path({"path": str(tmp_path / "data" / "sample_0001.h5"), "number": 1})
        digest, mtime = file_digest(first), first.stat().st_mtime_ns

        channels = [Channel(spec) for spec in specs()]
        async with ScanPublisher(redis_urls.data, doc(tmp_path, 2), channels) as publisher:
            await publisher.set_state("started")
            await publish(channels, 0, 300)

            async def some_acknowledged():
                acked = await client.hget(data_keys.ack_key(publisher.scan_id), "diode")
                return acked is not None and int(acked) >= 100

            await wait_until(some_acknowledged, timeout=20)
            writer.send_signal(signal.SIGKILL)
            writer.wait()
            await publish(channels, 300, 1000)
            for channel in channels:
                await channel.end()
            await publisher.close("success")
        writer = start_writer_process(redis_urls.data)
        await wait_until(lambda: is_written(client, publisher.scan_id), timeout=60)
        on_disk = read_scan_file({"path": str(tmp_path / "data" / "sample_0001.h5"), "number": 2})
        expected = expected_points(1000)
        for name in ("m1", "diode", "mca1:spectrum"):
            np.testing.assert_array_equal(on_disk[name], expected[name])
        assert file_digest(first) == digest and first.stat().st_mtime_ns == mtime
        with h5py.File(tmp_path / "data" / "sample_0001.h5", "r", locking=False) as master:
            assert sorted(master) == ["1.1", "2.1"]
    finally:
        writer.kill()
        writer.wait()
        await client.aclose()


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="mounting a tmpfs or a read-only bind needs root (CI runs as root)"
)


@needs_root
@pytest.mark.timeout(60)
async def test_disk_full_is_reported_and_earlier_scans_stay_intact(redis_urls, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], check=True)
    client = aredis.Redis.from_url(redis_urls.data)
    try:
        service = WriterService(redis_urls.data, flush_interval=0.1, min_free_bytes=0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.run)
            first_id = await run_scan(redis_urls.data, doc(small, 1), npoints=10)
            await wait_until(lambda: is_written(client, first_id), timeout=20)
            first = scan_file_path({"path": str(small / "data" / "sample_0001.h5"), "number": 1})
            digest = file_digest(first)
            # 20,000 spectra of 32 x uint32 = 2.5 MB: more than the disk holds.
            big_id = await run_scan(redis_urls.data, doc(small, 2), npoints=20_000, batch=2000)

            async def reported():
                return bool(await client.hget(data_keys.ack_key(big_id), "error"))

            await wait_until(reported, timeout=20)
            tg.cancel_scope.cancel()
        error = (await client.hget(data_keys.ack_key(big_id), "error")).decode()
        assert "No space left on device" in error or "MB free" in error, error
        events = await client.xrange(EVENTS_STREAM)
        assert any(e[b"scan"] == big_id.encode() for _, e in events)
        assert events[-1][1][b"session"] == b"writer_test"
        assert not await is_written(client, big_id)
        # The data stays in Redis, whole; the earlier scan's file is intact.
        async with DataStore(redis_urls.data) as store:
            view = await store.get_scan(big_id)
            assert await view.channels["diode"].length() == 20_000
            np.testing.assert_array_equal(
                await view.channels["diode"].get(0, 3), expected_points(3)["diode"]
            )
        assert file_digest(first) == digest
        np.testing.assert_array_equal(
            read_scan_file({"path": str(small / "data" / "sample_0001.h5"), "number": 1})["diode"],
            expected_points(10)["diode"],
        )
    finally:
        await client.aclose()
        subprocess.run(["umount", "-l", str(small)], check=False)


@needs_root
@pytest.mark.timeout(60)
async def test_unwritable_directory_is_reported_without_losing_data(redis_urls, tmp_path):
    source, readonly = tmp_path / "src", tmp_path / "ro"
    source.mkdir()
    readonly.mkdir()
    subprocess.run(["mount", "--bind", str(source), str(readonly)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(readonly)], check=True)
    client = aredis.Redis.from_url(redis_urls.data)
    try:
        service = WriterService(redis_urls.data, flush_interval=0.1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.run)
            scan_id = await run_scan(redis_urls.data, doc(readonly, 1), npoints=10)

            async def reported():
                return bool(await client.hget(data_keys.ack_key(scan_id), "error"))

            await wait_until(reported, timeout=20)
            tg.cancel_scope.cancel()
        error = (await client.hget(data_keys.ack_key(scan_id), "error")).decode()
        assert "Read-only file system" in error, error
        assert not await is_written(client, scan_id)
        assert await client.exists(data_keys.channel_key(scan_id, "diode"))
    finally:
        await client.aclose()
        subprocess.run(["umount", "-l", str(readonly)], check=False)
