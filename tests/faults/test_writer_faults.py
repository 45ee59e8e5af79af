"""Faults the HDF5 writer meets, injected the way a beamline meets them, judged from outside
(the writer as its own process, the files read with h5py, Redis read with redis-py):

- a scan number used twice in one directory: no file of another scan is ever reused;
- a writer restarted without the file an earlier one acknowledged: it goes on, says what is
  lost, and never spins;
- a file system that stops answering: reported to the scan's session, the other scans go
  on, the report goes when it answers again;
- a scan the writer cannot handle: reported on that scan, the writer goes on;
- the data Redis killed mid-scan: the file ends with what it holds and why, and is linked.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import h5py
import numpy as np
import pytest
import redis.asyncio as aredis

from beamlines import MOCKUP_BEAMLINE
from blissng.acquisition import Channel, ChannelSpec
from blissng.config import Config
from blissng.data import DataStore, ScanDocument, ScanPublisher, unregister_fallback
from blissng.data import keys as data_keys
from blissng.redisdb import RedisUrls, SettingsStore, async_client, start_one
from blissng.scans import close_shared_clients
from blissng.session import Session
from blissng.testing import clean_databases, wait_until
from blissng.writer import EVENTS_STREAM, find_scan_file, install, scan_file_path
from serverkit import folder_on_another_mount
from writer_process import is_written, start_writer_process, stop_writer, writer_process

pytestmark = pytest.mark.anyio

SPECS = [
    ChannelSpec("axis:m1", "float64", (), "mm", "m1", role="axis"),
    ChannelSpec("sim:diode", "float32", (), "cts", "sim"),
    ChannelSpec("mca1:spectrum", "uint32", (16,), None, "mca1"),
]


def points(start: int, stop: int, seed: int = 0) -> dict[str, np.ndarray]:
    index = np.arange(start, stop)
    return {
        "axis:m1": index * 0.5 + seed,
        "sim:diode": (index * 3.0 + seed).astype("float32"),
        "mca1:spectrum": (index[:, None] + np.arange(16) + seed).astype("uint32"),
    }


def document(folder: Path, number: int, **kw: Any) -> ScanDocument:
    return ScanDocument(
        session="faults",
        number=number,
        name="ascan",
        title=f"ascan m1 0 10 {number}",
        path=str(folder / "sample_0001.h5"),
        npoints=kw.pop("npoints", None),
        motors=[{"name": "m1", "start": 0.0, "stop": 10.0}],
        **kw,
    )


class Scan:
    """A scan published as the scans layer publishes it, one batch at a time."""

    def __init__(self, url: str, doc: ScanDocument, seed: int = 0) -> None:
        self.channels = [Channel(spec) for spec in SPECS]
        self.publisher = ScanPublisher(url, doc, self.channels)
        self.seed = seed
        self.length = 0

    @property
    def id(self) -> str:
        return self.publisher.scan_id

    async def emit(self, n: int, batch: int = 10) -> None:
        for start in range(self.length, self.length + n, batch):
            stop = min(self.length + n, start + batch)
            values = points(start, stop, self.seed)
            for channel in self.channels:
                await channel.emit(values[channel.name])
        self.length += n
        await self.publisher.flushed()

    async def end(self) -> None:
        for channel in self.channels:
            await channel.end()
        await self.publisher.close("success")


@pytest.fixture
async def client(redis_urls) -> AsyncIterator[aredis.Redis]:
    connection = aredis.Redis.from_url(redis_urls.data)
    try:
        yield connection
    finally:
        await connection.aclose()


async def publish(url: str, doc: ScanDocument, npoints: int, seed: int = 0) -> str:
    scan = Scan(url, doc, seed)
    async with scan.publisher:
        await scan.publisher.set_state("started")
        await scan.emit(npoints)
        await scan.end()
    return scan.id


def entry_values(path: Path, entry: str) -> dict[str, np.ndarray]:
    with h5py.File(path, "r", locking=False) as f:
        measurement = f[entry]["measurement"]
        return {d.attrs["channel"]: d[()] for d in measurement.values()}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def events_of(client: aredis.Redis, scan_id: str) -> list[dict[str, str]]:
    found = []
    for _, fields in await client.xrange(EVENTS_STREAM):
        if fields[b"scan"].decode() == scan_id:
            found.append({k.decode(): v.decode() for k, v in fields.items()})
    return found


# ---------------------------------------------------------------------------- issue 13, 1


@pytest.mark.timeout(90)
async def test_a_scan_number_used_twice_never_overwrites_the_other_scans_file(
    redis_urls, client, tmp_path
):
    """Two servers sharing a directory (or a Redis that forgot its numbers) give two scans
    the number 1: the second is written beside the first, which stays byte for byte."""
    folder = tmp_path / "data"
    fallback = install(redis_urls.data)
    try:
        with writer_process(redis_urls.data):
            first = await publish(redis_urls.data, document(folder, 1), 20, seed=0)
            await wait_until(lambda: is_written(client, first), timeout=30)
            kept = scan_file_path({"path": str(folder / "sample_0001.h5"), "number": 1})
            before = digest(kept)
            second = await publish(redis_urls.data, document(folder, 1), 30, seed=1000)
            await wait_until(lambda: is_written(client, second), timeout=30)
        assert digest(kept) == before  # not opened for writing, not reused
        first_values = entry_values(kept, "1.1")
        np.testing.assert_array_equal(first_values["sim:diode"], points(0, 20)["sim:diode"])
        async with DataStore(redis_urls.data) as store:
            second_doc = (await store.get_scan(second)).info
        moved = find_scan_file(second_doc)
        assert moved is not None and moved != kept and moved.parent == kept.parent
        second_values = entry_values(moved, "1.1")
        np.testing.assert_array_equal(second_values["sim:diode"], points(0, 30, 1000)["sim:diode"])
        # Both are linked from the data set file; the second under a name of its own.
        with h5py.File(folder / "sample_0001.h5", "r", locking=False) as master:
            links = {name: master.get(name, getlink=True).filename for name in master}
        assert links["1.1"] == "scans/sample_0001_0001.h5"
        assert sorted(links.values()) == sorted(
            ["scans/sample_0001_0001.h5", f"scans/{moved.name}"]
        )
        # The session was told, and readers falling back on files find the right one.
        warned = [e["message"] for e in await events_of(client, second)]
        assert any("holds another scan" in m for m in warned), warned
        keys = [k async for k in client.scan_iter(match=f"blissng:scan:{second}*")]
        await client.delete(*keys)  # as if expired: the data now comes from the file
        async with DataStore(redis_urls.data) as store:
            view = await store.get_scan(second)
            np.testing.assert_array_equal(
                await view.channels["sim:diode"].get(0, 30), points(0, 30, 1000)["sim:diode"]
            )
    finally:
        unregister_fallback(fallback)


# ---------------------------------------------------------------------------- issue 12, 3


async def trim_before(client: aredis.Redis, key: str, index: int) -> None:
    """What the memory guard does to acknowledged points (docs/data-model.md, trimming) when
    every published point before ``index`` is acknowledged and none after it is published."""
    await client.xtrim(key, minid=data_keys.entry_id(index))
    first = await client.xrange(key, "-", "+", count=1)
    assert not first or data_keys.entry_index(first[0][0]) >= index


async def acknowledged(client: aredis.Redis, scan_id: str, count: int) -> bool:
    acks = await client.hgetall(data_keys.ack_key(scan_id))
    return all(int(acks.get(s.name.encode(), 0)) >= count for s in SPECS)


@contextlib.asynccontextmanager
async def first_points_lost(
    url: str, client: aredis.Redis, folder: Path
) -> AsyncIterator[tuple[Scan, Callable[[], None]]]:
    """A scan of 300 points publishing, 100 emitted; the writer stopped once it acknowledged
    them; their file lost (a disk replaced, a folder moved), and Redis trimmed what the writer
    had acknowledged; a new writer running (until the end of the block). With the scan comes
    a call that kills the writer (SIGKILL) and starts another."""
    scan = Scan(url, document(folder, 1, npoints=300))
    writers = [start_writer_process(url)]

    def restart_writer() -> None:
        stop_writer(writers[-1])
        writers.append(start_writer_process(url))

    try:
        async with scan.publisher:
            await scan.publisher.set_state("started")
            await scan.emit(100)
            await wait_until(lambda: acknowledged(client, scan.id, 100), timeout=30)
            stop_writer(writers[-1])
            scan_file_path({"path": str(folder / "sample_0001.h5"), "number": 1}).unlink()
            for spec in SPECS:
                await trim_before(client, data_keys.channel_key(scan.id, spec.name), 100)
            writers.append(start_writer_process(url))
            yield scan, restart_writer
    finally:
        for writer in writers:
            stop_writer(writer)


def assert_lost_points(path: Path) -> None:
    """The file of a scan whose points 0..99 were lost says so."""
    with h5py.File(path, "r", locking=False) as f:
        entry = f["1.1"]
        lost = entry["measurement/diode"].attrs["lost_points"]
        np.testing.assert_array_equal(lost, [[0, 100]])
        assert "lost" in entry.attrs["error"]


@pytest.mark.timeout(120)
async def test_a_writer_restarted_without_its_file_writes_the_rest_and_says_what_is_lost(
    redis_urls, client, tmp_path
):
    folder = tmp_path / "data"
    async with first_points_lost(redis_urls.data, client, folder) as (scan, _):
        await scan.emit(200)
        await scan.end()
        # It does not spin on the missing points: the rest is written, and a later scan too.
        other = await publish(redis_urls.data, document(folder, 2), 10)
        await wait_until(lambda: is_written(client, scan.id), timeout=60)
        await wait_until(lambda: is_written(client, other), timeout=30)
    path = scan_file_path({"path": str(folder / "sample_0001.h5"), "number": 1})
    values = entry_values(path, "1.1")
    expected = points(0, 300)
    for name in ("axis:m1", "sim:diode", "mca1:spectrum"):
        assert len(values[name]) == 300
        np.testing.assert_array_equal(values[name][100:], expected[name][100:])
    assert np.isnan(values["sim:diode"][:100]).all()  # lost, not made up
    assert_lost_points(path)
    messages = [e["message"] for e in await events_of(client, scan.id)]
    assert any("points 0..99 of diode are lost" in m for m in messages), messages


@pytest.mark.timeout(120)
async def test_points_lost_before_the_writer_tries_a_scan_again_are_still_listed_in_its_file(
    redis_urls, client, tmp_path
):
    """The writer found points lost, wrote the rest, then had to start the scan's writing
    again (its connections to the data Redis dropped): its new try resumes after the filler
    and finds no loss itself, and the file still lists them and says so."""
    folder = tmp_path / "data"
    async with first_points_lost(redis_urls.data, client, folder) as (scan, _):
        await scan.emit(200)
        await wait_until(lambda: acknowledged(client, scan.id, 300), timeout=30)
        await client.client_kill_filter(_type="normal", skipme=True)  # all but this one
        await scan.end()
        await wait_until(lambda: is_written(client, scan.id), timeout=60)
    path = scan_file_path({"path": str(folder / "sample_0001.h5"), "number": 1})
    assert len(entry_values(path, "1.1")["sim:diode"]) == 300
    assert_lost_points(path)


@pytest.mark.timeout(120)
async def test_points_lost_before_the_writer_was_killed_are_still_listed_in_its_file(
    redis_urls, client, tmp_path
):
    """The writer found points lost and wrote the rest, then was killed (SIGKILL) and started
    again: the new process resumes after the filler and finds no loss itself; the file it
    finishes still lists them and says so."""
    folder = tmp_path / "data"
    async with first_points_lost(redis_urls.data, client, folder) as (scan, restart_writer):
        await scan.emit(200)
        await wait_until(lambda: acknowledged(client, scan.id, 300), timeout=30)
        restart_writer()
        await scan.end()
        await wait_until(lambda: is_written(client, scan.id), timeout=60)
    path = scan_file_path({"path": str(folder / "sample_0001.h5"), "number": 1})
    assert len(entry_values(path, "1.1")["sim:diode"]) == 300
    assert_lost_points(path)


# ---------------------------------------------------------------------------- issue 12, 4


@pytest.fixture
def other_file_system(tmp_path) -> Iterator[Path]:
    """A directory on another mount than ``tmp_path`` (/dev/shm, a tmpfs)."""
    with folder_on_another_mount(tmp_path) as folder:
        yield folder


async def status(client: aredis.Redis) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (await client.hgetall("blissng:writer")).items()}


@pytest.mark.timeout(120)
async def test_a_stuck_file_system_is_reported_to_the_session_and_other_scans_go_on(
    redis_urls, client, tmp_path, other_file_system
):
    """A file system that stops answering (here: a FIFO where the scan file should be, whose
    open never returns, as a dead NFS mount's) holds only its own scans."""
    stuck_folder = tmp_path / "nfs"
    fifo = scan_file_path({"path": str(stuck_folder / "sample_0001.h5"), "number": 1})
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    with writer_process(redis_urls.data, "--fs-timeout", "1"):
        stuck = await publish(redis_urls.data, document(stuck_folder, 1), 10)
        elsewhere = await publish(redis_urls.data, document(other_file_system, 2), 10)
        await wait_until(lambda: is_written(client, elsewhere), timeout=30)

        async def reported() -> bool:
            return bool(await client.hget(data_keys.ack_key(stuck), "error"))

        await wait_until(reported, timeout=30)
        error = (await client.hget(data_keys.ack_key(stuck), "error")).decode()
        assert "is not answering" in error and "did not return within 1 s" in error, error
        told = await events_of(client, stuck)
        assert told and told[0]["session"] == "faults" and told[0]["level"] == "error"
        # The writer's loop runs on; its status names the stuck file system and the lag.
        first = await status(client)

        async def status_moves() -> bool:
            now = await status(client)
            return float(now["time"]) > float(first["time"]) and "file system" in now["stuck"]

        await wait_until(status_moves, timeout=10)
        assert int((await status(client))["lag"]) == 30  # 10 points of 3 channels, none on disk
        assert not await is_written(client, stuck)
        # The file system answers again: the scan is written and the report goes.
        # (The FIFO moves away first, so that no later open finds it, then its open returns.)
        moved = fifo.with_name("answered")
        fifo.rename(moved)
        answer = threading.Thread(target=lambda: os.close(os.open(moved, os.O_WRONLY)))
        answer.start()
        answer.join(10)
        await wait_until(lambda: is_written(client, stuck), timeout=60)
        assert await client.hget(data_keys.ack_key(stuck), "error") is None
        told = await events_of(client, stuck)
        assert [e["level"] for e in told] == ["error", "info"]  # once each, not every retry
    values = entry_values(fifo, "1.1")
    np.testing.assert_array_equal(values["sim:diode"], points(0, 10)["sim:diode"])


@pytest.mark.timeout(90)
async def test_a_scan_the_writer_cannot_handle_is_reported_and_the_others_are_written(
    redis_urls, client, tmp_path
):
    folder = tmp_path / "data"
    with writer_process(redis_urls.data) as writer:
        # A channel of Python objects: HDF5 has no type for it (an error no retry can fix).
        spec = ChannelSpec("odd:thing", "object", device="odd")
        doc = document(folder, 1)
        async with ScanPublisher(redis_urls.data, doc, [Channel(spec)]) as publisher:
            await publisher.close("success")
        bad = publisher.scan_id
        good = await publish(redis_urls.data, document(folder, 2), 10)
        await wait_until(lambda: is_written(client, good), timeout=30)

        async def reported() -> bool:
            return bool(await client.hget(data_keys.ack_key(bad), "error"))

        await wait_until(reported, timeout=30)
        assert "TypeError" in (await client.hget(data_keys.ack_key(bad), "error")).decode()
        assert writer.poll() is None  # the writer goes on
        after = await publish(redis_urls.data, document(folder, 3), 10)
        await wait_until(lambda: is_written(client, after), timeout=30)


# ---------------------------------------------------------------------------- issue 13, 5


@pytest.mark.timeout(120)
async def test_the_data_redis_killed_mid_scan_leaves_a_linked_file_that_tells_the_truth(tmp_path):
    """The server stops its writer once its data Redis is gone: the scan's file says what it
    holds and why it ended, and the data set file links it."""
    from blissng.data import PublisherOptions

    redis = start_one("data", tmp_path / "redis", persistent=False)
    folder = tmp_path / "data"
    client = aredis.Redis.from_url(redis.url)
    writer = start_writer_process(redis.url)
    try:
        scan = Scan(redis.url, document(folder, 1, npoints=201))
        scan.publisher.options = PublisherOptions(redis_timeout=1.0, close_timeout=1.0)
        with anyio.CancelScope() as scope:  # the scan ends with its server
            async with scan.publisher:
                await scan.publisher.set_state("started")
                await scan.emit(67)

                async def acknowledged() -> bool:
                    acks = await client.hgetall(data_keys.ack_key(scan.id))
                    return all(int(acks.get(s.name.encode(), 0)) >= 67 for s in SPECS)

                await wait_until(acknowledged, timeout=30)
                redis.process.kill()
                redis.process.wait()
                writer.send_signal(signal.SIGTERM)
                assert writer.wait(60) == 0
                scope.cancel()
    finally:
        stop_writer(writer)
        redis.stop()
        await client.aclose()
    path = scan_file_path({"path": str(folder / "sample_0001.h5"), "number": 1})
    with h5py.File(path, "r", locking=False) as f:
        entry = f["1.1"]
        assert entry["end_time"][()]
        assert entry.attrs["end_reason"] == "failed"
        assert "data Redis" in entry.attrs["error"] and "67 of 201 points" in entry.attrs["error"]
        assert entry["measurement/diode"].shape == (67,)
    np.testing.assert_array_equal(
        entry_values(path, "1.1")["sim:diode"], points(0, 67)["sim:diode"]
    )
    with h5py.File(folder / "sample_0001.h5", "r", locking=False) as master:
        assert master["1.1/measurement/diode"].shape == (67,)  # linked, readable through it


# ---------------------------------------------------------------------------- sessions


@contextlib.asynccontextmanager
async def session(config_dir: Path, urls: RedisUrls, base_path: Path) -> AsyncIterator[Session]:
    """A session as a server runs it (its settings in ``urls.settings``), saving in
    ``base_path``."""
    client = async_client(urls.settings)
    try:
        config = Config(config_dir, settings=SettingsStore(client))
        async with Session(
            "w1", config=config, redis=urls, scan_saving={"base_path": str(base_path)}
        ) as s:
            yield s
    finally:
        await client.aclose()
        await close_shared_clients()


async def run_scans(s: Session, client: aredis.Redis, count: int) -> list[Any]:
    scans = [await s.execute("ascan(m1, 0, 1, 4, 0, sim)") for _ in range(count)]
    for scan in scans:
        await wait_until(lambda scan=scan: is_written(client, scan.scan_id), timeout=30)
    return scans


@pytest.mark.timeout(120)
async def test_scan_numbers_never_go_back_in_a_data_directory(
    write_config, config_dir, redis_stack, redis_urls, client, tmp_path
):
    """Numbers live in the settings Redis; a Redis that forgot them (not persistent, restarted)
    or another server saving in the same directory must not reuse one: each would claim
    another scan's file."""
    write_config("beamline.yml", MOCKUP_BEAMLINE)
    base = tmp_path / "data"
    with writer_process(redis_urls.data):
        async with session(config_dir, redis_urls, base) as s:
            first = await run_scans(s, client, 2)
        assert [scan.number for scan in first] == [1, 2]
        files = {scan.number: scan_file_path(scan.describe()) for scan in first}
        kept = {n: digest(path) for n, path in files.items()}
        settings = aredis.Redis.from_url(redis_urls.settings)
        await settings.flushdb()  # the settings Redis restarted without its data
        await settings.aclose()
        async with session(config_dir, redis_urls, base) as s:
            (again,) = await run_scans(s, client, 1)
        # Another server (its own settings Redis) saving in the same directory.
        other = RedisUrls(settings=clean_databases(redis_stack).settings, data=redis_urls.data)
        async with session(config_dir, other, base) as s:
            (theirs,) = await run_scans(s, client, 1)
    assert (again.number, theirs.number) == (3, 4)
    assert {n: digest(path) for n, path in files.items()} == kept
    dataset_file = Path(first[0].path)
    with h5py.File(dataset_file, "r", locking=False) as master:
        assert sorted(master) == ["1.1", "2.1", "3.1", "4.1"]
        ids = {name: master[name].attrs["blissng_scan_id"] for name in master}
    assert ids == {f"{s.number}.1": s.scan_id for s in (*first, again, theirs)}
    leftovers = [p.name for p in dataset_file.parent.joinpath("scans").iterdir()]
    assert sorted(leftovers) == [f"sample_0001_000{n}.h5" for n in (1, 2, 3, 4)]


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)"
)


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 100 MB file system with 40 MB left free."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100m", "tmpfs", str(disk)], check=True)
    try:
        free = shutil.disk_usage(disk).free
        with open(disk / "ballast", "wb") as ballast:
            ballast.truncate(0)
            ballast.write(b"\0" * (free - 40 * 10**6))
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@needs_root
@pytest.mark.timeout(120)
async def test_a_scan_starts_only_if_the_writer_will_write_it(
    write_config, config_dir, redis_urls, client, small_disk
):
    """One free-space rule for the scans layer and the writer (issue 13, finding 7)."""
    write_config("beamline.yml", MOCKUP_BEAMLINE)
    with writer_process(redis_urls.data):
        async with session(config_dir, redis_urls, small_disk / "data") as s:
            with pytest.raises(OSError, match=r"only 4\d\.\d MB free .* 64 MB kept free"):
                await s.execute("ascan(m1, 0, 1, 4, 0, sim)")
            assert "64 MB kept free" in s.output.history()
            # The user lowers the figure: the scan runs, and the writer keeps the same.
            s.scan_saving.min_free_mb = 10
            (scan,) = await run_scans(s, client, 1)
    assert scan.state == "done"
    values = entry_values(scan_file_path(scan.describe()), f"{scan.number}.1")
    assert len(values["sim:diode"]) == 5
