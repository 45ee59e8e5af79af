"""The publisher loses nothing and duplicates nothing when Redis misbehaves mid-scan.

Each test runs its own redis-server (start_one in a tmp dir): killing, restarting or stopping
it disturbs no one else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator

import anyio
import anyio.lowlevel
import numpy as np
import pytest
import redis
import redis.asyncio as aredis

from blissng.acquisition import Channel, ChannelSpec
from blissng.data import (
    DataPublishError,
    PublisherOptions,
    ScanPublisher,
    acknowledge,
)
from blissng.redisdb import RedisProcess, start_one
from blissng.testing import wait_until

pytestmark = pytest.mark.anyio


class OwnRedis:
    """A redis-server of this test only, restartable on the same socket."""

    def __init__(self, directory) -> None:
        self.server: RedisProcess = start_one("data", directory, persistent=False)
        self.args = list(self.server.process.args)  # type: ignore[arg-type]
        self.extra: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return self.server.url

    def kill(self) -> None:
        self.server.process.kill()
        self.server.process.wait(10)
        for proc in self.extra:
            proc.kill()
            proc.wait(10)
        with contextlib.suppress(FileNotFoundError):
            self.server.socket.unlink()

    def start_again(self) -> None:
        """A new, empty redis-server on the same socket (what a restart looks like)."""
        proc = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self.extra.append(proc)
        client = redis.Redis(unix_socket_path=str(self.server.socket), socket_timeout=1)
        try:
            for _ in range(1000):
                with contextlib.suppress(redis.ConnectionError, OSError):
                    if client.ping():
                        return
                if proc.poll() is not None:
                    raise RuntimeError("redis-server did not restart")
                import time

                time.sleep(0.01)  # waiting for a child process, in a worker thread
        finally:
            client.close()
        raise RuntimeError("redis-server did not answer after restart")

    def stop(self) -> None:
        for proc in [self.server.process, *self.extra]:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.server.stop()


@pytest.fixture
def own_redis(tmp_path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


def read_stream(url: str, key: str) -> tuple[list[int], np.ndarray, int | None]:
    """(first index of each entry, the points, the seal) by the documented layout."""
    client = redis.Redis.from_url(url)
    try:
        entries = client.xrange(key)
    finally:
        client.close()
    starts, parts, seal = [], [], None
    for entry_id, fields in entries:
        index = int(entry_id.split(b"-")[0])
        if b"end" in fields:
            seal = int(fields[b"end"])
        else:
            starts.append(index)
            parts.append(np.frombuffer(fields[b"d"], "<f8"))
    return starts, np.concatenate(parts) if parts else np.zeros(0), seal


def assert_contiguous(starts: list[int], data: np.ndarray, first: int) -> None:
    # each entry starts where the previous ended (no gap, no duplicate)
    assert starts[0] == first
    np.testing.assert_array_equal(data, np.arange(first, first + len(data), dtype="f8"))


DOC = {"session": "test", "number": 1, "name": "loopscan", "save": True, "dataset": "ds"}


async def test_client_kill_mid_scan_loses_and_duplicates_nothing(own_redis):
    channels = [Channel(ChannelSpec(f"c{i}", "float64")) for i in range(3)]
    killer = aredis.Redis.from_url(own_redis.url)
    killed = 0
    try:
        async with ScanPublisher(own_redis.url, DOC, channels) as pub:
            for i in range(3000):
                for channel in channels:
                    await channel.emit(float(i))
                if i % 100 == 50:
                    # the publisher's connection drops while it has data in flight
                    killed += int(await killer.client_kill_filter(_type="normal", skipme=True))
                await anyio.lowlevel.checkpoint()
            await pub.close()
    finally:
        await killer.aclose()
    assert killed >= 5
    for channel in channels:
        starts, data, seal = read_stream(own_redis.url, pub.stream_keys[channel.name])
        assert seal == 3000
        assert_contiguous(starts, data, 0)
        assert len(data) == 3000


@pytest.mark.timeout(120)
async def test_redis_restart_mid_scan_republishes_what_is_not_on_disk(own_redis):
    channel = Channel(ChannelSpec("c", "float64"))
    options = PublisherOptions(ack_interval=0.05, redis_timeout=30)
    writer = aredis.Redis.from_url(own_redis.url)
    async with ScanPublisher(own_redis.url, DOC, [channel], options=options) as pub:
        await pub.set_state("started")
        for i in range(500):
            await channel.emit(float(i))
            await anyio.lowlevel.checkpoint()
        # The writer acknowledges 200 points on disk; the publisher takes note of it.
        await acknowledge(writer, pub.scan_id, {"c": 200})
        await wait_until(lambda: pub.status.acknowledged_points["c"] == 200)
        await writer.aclose()
        # only what is not on disk stays retained (give or take the entry holding point 200)
        assert 300 * 8 <= pub.status.retained_bytes < 500 * 8
        # Redis dies and comes back empty, in the middle of the scan.
        own_redis.kill()
        for i in range(500, 700):
            await channel.emit(float(i))
        await anyio.to_thread.run_sync(own_redis.start_again)
        for i in range(700, 1000):
            await channel.emit(float(i))
            await anyio.lowlevel.checkpoint()
        await channel.end()
        await pub.close()
    starts, data, seal = read_stream(own_redis.url, pub.stream_keys["c"])
    assert seal == 1000
    # Points 0..199 are on disk (the writer has them); everything after is back in Redis,
    # in order, once.
    assert starts[0] <= 200
    assert_contiguous(starts, data, starts[0])
    assert starts[0] + len(data) == 1000
    client = redis.Redis.from_url(own_redis.url)
    try:
        assert client.hget(pub.key, "state") == b"closed"
        assert client.hget(f"{pub.key}:ack", "c") == b"200"  # the writer's ack restored
        states = [f[b"state"] for _, f in client.xrange(f"{pub.key}:state")]
        assert states == [b"created", b"started", b"closed"]
        assert client.xlen("blissng:scans") == 1  # announced again to the new Redis
    finally:
        client.close()


async def test_redis_unreachable_fails_the_scan_in_bounded_time(own_redis):
    channel = Channel(ChannelSpec("c", "float64"))
    options = PublisherOptions(redis_timeout=1.0, socket_timeout=0.5, close_timeout=2.0)
    with anyio.fail_after(15):
        with pytest.raises(DataPublishError, match="unreachable for .* redis_timeout=1.0"):
            async with ScanPublisher(own_redis.url, DOC, [channel], options=options) as pub:
                await channel.emit(1.0)
                own_redis.kill()
                for i in range(100_000):
                    await channel.emit(float(i))
                    await anyio.sleep(0.001)
    assert pub.status.state == "failed"


async def test_hung_redis_fails_the_scan_in_bounded_time(own_redis):
    """A stopped (SIGSTOP) server answers nothing: the socket timeout turns it into a lost
    connection, and the scan fails instead of hanging."""
    channel = Channel(ChannelSpec("c", "float64"))
    options = PublisherOptions(redis_timeout=1.0, socket_timeout=0.3, close_timeout=2.0)
    try:
        with anyio.fail_after(15):
            with pytest.raises(DataPublishError, match="unreachable"):
                async with ScanPublisher(own_redis.url, DOC, [channel], options=options):
                    await channel.emit(1.0)
                    os.kill(own_redis.server.process.pid, signal.SIGSTOP)
                    for i in range(100_000):
                        await channel.emit(float(i))
                        await anyio.sleep(0.001)
    finally:
        os.kill(own_redis.server.process.pid, signal.SIGCONT)


async def test_no_redis_at_all_fails_at_creation(tmp_path):
    url = f"unix://{tmp_path}/nothing.sock?db=0"
    options = PublisherOptions(redis_timeout=0.5)
    with anyio.fail_after(10):
        with pytest.raises(DataPublishError, match="nothing.sock"):
            channels = [Channel(ChannelSpec("c", "float64"))]
            async with ScanPublisher(url, DOC, channels, options=options):
                pass


@pytest.mark.timeout(120)
async def test_a_live_reader_follows_through_a_redis_restart(own_redis):
    """The cursor reconnects and goes on where it was: every point once, in order."""
    from blissng.data import DataStore

    channel = Channel(ChannelSpec("c", "float64"))
    got: list[np.ndarray] = []
    half = anyio.Event()
    options = PublisherOptions(ack_interval=0.05)
    async with DataStore(own_redis.url) as store:
        async with ScanPublisher(own_redis.url, DOC, [channel], options=options) as pub:
            scan = await store.get_scan(pub.scan_id)

            async def read() -> None:
                async for batch in scan["c"].cursor():
                    got.append(batch)
                    if sum(len(b) for b in got) >= 300:
                        half.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                for i in range(400):
                    await channel.emit(float(i))
                    await anyio.lowlevel.checkpoint()
                with anyio.fail_after(20):
                    await half.wait()
                own_redis.kill()
                for i in range(400, 600):
                    await channel.emit(float(i))
                await anyio.to_thread.run_sync(own_redis.start_again)
                for i in range(600, 800):
                    await channel.emit(float(i))
                    await anyio.lowlevel.checkpoint()
                await channel.end()
                await pub.close()
    np.testing.assert_array_equal(np.concatenate(got), np.arange(800.0))
