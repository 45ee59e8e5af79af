"""Memory policy: TTLs at the right moments, trimming only written data, the memory guard."""

from __future__ import annotations

import logging

import anyio
import numpy as np
import pytest
import redis.asyncio as aredis

from blissng.acquisition import Channel, ChannelSpec
from blissng.data import (
    DataMemoryFull,
    DataPublishError,
    MemoryGuard,
    PublisherOptions,
    Retention,
    ScanDocument,
    ScanPublisher,
    acknowledge,
    allocate_scan_number,
    check_can_start_scan,
    mark_scan_written,
)
from blissng.redisdb import start_one
from blissng.testing import wait_until

pytestmark = pytest.mark.anyio

RETENTION = Retention(written_ttl=60, unsaved_ttl=30, dataset_ttl=90)


def doc(number: int = 1, **kw) -> ScanDocument:
    kw.setdefault("dataset", "/data/ds1")
    return ScanDocument(session="demo", number=number, name="ascan", retention=RETENTION, **kw)


async def ttls(client: aredis.Redis, pub: ScanPublisher) -> dict[str, int]:
    names = [pub.key, f"{pub.key}:state", *pub.stream_keys.values()]
    return {name: await client.ttl(name) for name in names}


async def test_unsaved_scan_expires_from_its_close(redis_urls):
    channel = Channel(ChannelSpec("x", "float64"))
    client = aredis.Redis.from_url(redis_urls.data)
    try:
        async with ScanPublisher(redis_urls.data, doc(save=False), [channel]) as pub:
            await channel.emit([1.0, 2.0])
            await pub.flushed()
            assert set((await ttls(client, pub)).values()) == {-1}  # running: no TTL
            await pub.close()
        values = await ttls(client, pub)
        assert all(0 < ttl <= 30 for ttl in values.values()), values
        # unsaved scans have no data set keys
        assert not await client.exists("blissng:dataset:/data/ds1")
    finally:
        await client.aclose()


async def test_saved_scan_expires_from_when_it_is_written(redis_urls):
    channel = Channel(ChannelSpec("x", "float64"))
    client = aredis.Redis.from_url(redis_urls.data)
    try:
        async with ScanPublisher(redis_urls.data, doc(), [channel]) as pub:
            await channel.emit([1.0, 2.0])
            await pub.close()
        assert set((await ttls(client, pub)).values()) == {-1}  # closed, not written: kept
        assert 0 < await client.ttl("blissng:dataset:/data/ds1") <= 90
        assert 0 < await client.ttl("blissng:dataset:/data/ds1:scans") <= 90
        await acknowledge(client, pub.scan_id, {"x": 2})
        await mark_scan_written(client, pub.scan_id, file="/data/ds1/ds1.h5")
        values = await ttls(client, pub)
        values["ack"] = await client.ttl(f"{pub.key}:ack")
        assert all(30 < ttl <= 60 for ttl in values.values()), values
        ack = await client.hgetall(f"{pub.key}:ack")
        assert ack[b"written"] == b"1" and ack[b"x"] == b"2"
        assert ack[b"file"] == b"/data/ds1/ds1.h5"
    finally:
        await client.aclose()


async def test_publisher_trims_only_acknowledged_data(redis_urls):
    channel = Channel(ChannelSpec("x", "float64"))
    options = PublisherOptions(keep_written_bytes=80 * 8, ack_interval=0.02)
    client = aredis.Redis.from_url(redis_urls.data)
    try:
        async with ScanPublisher(redis_urls.data, doc(), [channel], options=options) as pub:
            for i in range(0, 1000, 10):
                await channel.emit(np.arange(i, i + 10, dtype="f8"))
                await pub.flushed()
            key = pub.stream_keys["x"]
            assert (await client.xrange(key, count=1))[0][0] == b"0-1"  # nothing written yet
            await acknowledge(client, pub.scan_id, {"x": 605})

            async def trimmed() -> bool:
                return (await client.xrange(key, count=1))[0][0] != b"0-1"

            await wait_until(trimmed)
            first = int((await client.xrange(key, count=1))[0][0].split(b"-")[0])
            # trimmed to keep about 80 written points, never past the acknowledged 605
            assert 600 - 80 - 10 <= first <= 600
            await pub.close()
        entries = await client.xrange(key)
        assert entries[-1] == (b"1000-1", {b"end": b"1000"})
        assert sum(int(f[b"n"]) for _, f in entries[:-1]) == 1000 - first
    finally:
        await client.aclose()


async def test_scan_numbers_are_atomic(redis_urls):
    client = aredis.Redis.from_url(redis_urls.data)
    try:
        numbers: list[int] = []

        async def take() -> None:
            numbers.append(await allocate_scan_number(client, "demo"))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(take)
        assert sorted(numbers) == list(range(1, 21))
        assert await allocate_scan_number(client, "demo", at_least=100) == 100
        assert await allocate_scan_number(client, "demo") == 101
        assert await allocate_scan_number(client, "other") == 1
    finally:
        await client.aclose()


MB = 2**20


# Points per batch: an entry just under 1 MiB fits jemalloc's 1 MiB size class exactly.
ROWS = 127


async def fill(url: str, number: int, megabytes: int) -> ScanPublisher:
    """A closed scan of ``megabytes`` of one 1D channel (1 MiB entries)."""
    channel = Channel(ChannelSpec("spectrum", "float64", (1024,)))
    options = PublisherOptions(memory_full_timeout=5)
    async with ScanPublisher(url, doc(number), [channel], options=options) as pub:
        for i in range(megabytes):
            await channel.emit(np.full((ROWS, 1024), i, dtype="f8"))
        await pub.close()
    return pub


@pytest.mark.timeout(120)
async def test_memory_guard_trims_written_data_and_refuses_new_scans(tmp_path, caplog):
    server = start_one("data", tmp_path / "redis", persistent=False, maxmemory="64mb")
    url = server.url
    client = aredis.Redis.from_url(url)
    caplog.set_level(logging.WARNING, logger="blissng.data")
    try:
        options = PublisherOptions(ack_interval=0.02)
        running = Channel(ChannelSpec("x", "float64"))
        async with ScanPublisher(url, doc(99), [running], options=options) as live:
            await running.emit([0.0])
            written = await fill(url, 1, 6)  # on disk
            partly = await fill(url, 2, 18)  # 6 MB of it on disk
            unwritten = await fill(url, 3, 32)  # nothing on disk yet
            await acknowledge(client, written.scan_id, {"spectrum": 6 * ROWS})
            await mark_scan_written(client, written.scan_id)
            await acknowledge(client, partly.scan_id, {"spectrum": 6 * ROWS})
            guard = MemoryGuard(client, threshold=0.6)
            status = await guard.check()
            # written data trimmed; unwritten data all there
            assert status.trimmed_entries >= 12
            assert status.state == "full", status
            assert "not yet written to disk" in status.message
            # trimming was not enough: the written scan went before its TTL (its file has it)
            assert not await client.exists(written.key, written.stream_keys["spectrum"])
            entries = await client.xrange(partly.stream_keys["spectrum"])
            assert int(entries[0][0].split(b"-")[0]) == 6 * ROWS
            assert sum(int(f[b"n"]) for _, f in entries[:-1]) == 12 * ROWS
            entries = await client.xrange(unwritten.stream_keys["spectrum"])
            assert sum(int(f[b"n"]) for _, f in entries[:-1]) == 32 * ROWS
            # new scans are refused, with the message
            with pytest.raises(DataMemoryFull, match="not yet written to disk"):
                await check_can_start_scan(client)
            with pytest.raises(DataMemoryFull, match="not yet written to disk"):
                async with ScanPublisher(url, doc(4), [Channel(ChannelSpec("x", "float64"))]):
                    pass
            # the running scan holds its data, visibly
            await wait_until(lambda: live.status.state == "memory_full")
            assert "full of data not yet written" in live.status.message
            assert any("full" in r.getMessage() for r in caplog.records)
            for i in range(1, 50):
                await running.emit(float(i))
            assert live.status.buffered_bytes > 0
            # the writer catches up: the guard frees memory, the running scan goes on
            await acknowledge(client, unwritten.scan_id, {"spectrum": 32 * ROWS})
            await acknowledge(client, partly.scan_id, {"spectrum": 18 * ROWS})
            status = await guard.check()
            assert status.state == "ok", status
            await check_can_start_scan(client)
            with anyio.fail_after(10):
                await live.flushed()
            assert live.status.state == "ok"
            await live.close()
        entries = await client.xrange(live.stream_keys["x"])
        data = np.concatenate([np.frombuffer(f[b"d"], "<f8") for _, f in entries[:-1]])
        np.testing.assert_array_equal(data, np.arange(50.0))
    finally:
        await client.aclose()
        server.stop()


async def written_scans(url: str, client: aredis.Redis, first: int, count: int) -> list[str]:
    """``count`` small scans (a few points: what stays is their document, states, seals),
    each acknowledged and marked written."""
    ids = []
    for number in range(first, first + count):
        channels = [Channel(ChannelSpec(f"c{i}", "float64")) for i in range(8)]
        async with ScanPublisher(url, doc(number), channels) as pub:
            for channel in channels:
                await channel.emit([1.0, 2.0])
            await pub.close()
        await acknowledge(client, pub.scan_id, {f"c{i}": 2 for i in range(8)})
        await mark_scan_written(client, pub.scan_id)
        ids.append(pub.scan_id)
    return ids


@pytest.mark.timeout(120)
async def test_written_scans_go_before_their_ttl_when_trimming_is_not_enough(tmp_path):
    """Many small written scans fill a small Redis with what trimming cannot free
    (documents, states, seals: their TTL is minutes away): the guard drops written scans,
    oldest first, instead of refusing new scans as if the data were unwritten."""
    server = start_one("data", tmp_path / "redis", persistent=False)
    client = aredis.Redis.from_url(server.url)
    try:
        unwritten = await fill(server.url, 1, 1)  # 1 MiB the writer has not acknowledged
        ids = await written_scans(server.url, client, 2, 60)
        used = int((await client.info("memory"))["used_memory"])
        guard = MemoryGuard(client, threshold=0.8, max_bytes=int(used / 0.85))
        status = await guard.check()
        assert status.state == "ok", status
        gone = [not await client.exists(f"blissng:scan:{i}") for i in ids]
        assert gone[0] and not gone[-1]  # the oldest went, the newest stay
        assert gone == sorted(gone, reverse=True)  # oldest first
        entries = await client.xrange(unwritten.stream_keys["spectrum"])
        assert sum(int(f[b"n"]) for _, f in entries[:-1]) == ROWS  # unwritten: untouched
    finally:
        await client.aclose()
        server.stop()


@pytest.mark.timeout(120)
async def test_a_scan_starting_in_a_nearly_full_redis_frees_what_is_written(tmp_path):
    """Scans come faster than the guard looks: a scan that finds Redis above 95 % trims what
    is written itself instead of being refused."""
    server = start_one("data", tmp_path / "redis", persistent=False)
    client = aredis.Redis.from_url(server.url)
    try:
        written = await fill(server.url, 1, 4)
        await acknowledge(client, written.scan_id, {"spectrum": 4 * ROWS})
        await mark_scan_written(client, written.scan_id)
        used = int((await client.info("memory"))["used_memory"])
        await client.config_set("maxmemory", int(used / 0.97))  # 97 % used, no guard ran
        await check_can_start_scan(client)
        assert await client.xlen(written.stream_keys["spectrum"]) == 1  # trimmed to its seal
    finally:
        await client.aclose()
        server.stop()


async def test_memory_guard_runs_as_a_task(redis_urls):
    """The server runs the guard in its task group; it publishes its status for displays."""
    client = aredis.Redis.from_url(redis_urls.data)
    try:
        guard = MemoryGuard(redis_urls.data, threshold=0.8, interval=0.01, max_bytes=2**40)
        async with anyio.create_task_group() as tg:
            tg.start_soon(guard.run)
            await wait_until(lambda: client.exists("blissng:memory"))
            tg.cancel_scope.cancel()
        status = await client.hgetall("blissng:memory")
        assert status[b"state"] == b"ok"
        assert int(status[b"max"]) in (2**40, 512 * 2**20)  # Redis's maxmemory wins if set
        assert guard.status is not None and guard.status.state == "ok"
        await check_can_start_scan(client)
        with pytest.raises(ValueError, match="threshold"):
            MemoryGuard(client, threshold=1.5)
    finally:
        await client.aclose()


async def test_a_scan_id_is_unique(redis_urls):
    document = doc(5)
    channels = [Channel(ChannelSpec("x", "float64"))]
    async with ScanPublisher(redis_urls.data, document, channels) as pub:
        await pub.close()
    again = ScanDocument(session="demo", number=5, name="ascan", id=document.id)
    with pytest.raises(DataPublishError, match="already exists"):
        async with ScanPublisher(redis_urls.data, again, [Channel(ChannelSpec("x", "float64"))]):
            pass


@pytest.mark.timeout(120)
async def test_redis_out_of_memory_holds_the_scan_until_room_is_made(tmp_path):
    """Redis refuses writes (OOM): the publisher holds its data, says so, and goes on without
    loss or duplicate once the guard frees written data; a scan held too long fails."""
    server = start_one("data", tmp_path / "redis", persistent=False, maxmemory="12mb")
    url = server.url
    client = aredis.Redis.from_url(url)
    try:
        filler = await fill(url, 1, 6)
        await acknowledge(client, filler.scan_id, {"spectrum": 6 * ROWS})
        await mark_scan_written(client, filler.scan_id)
        channel = Channel(ChannelSpec("spectrum", "float64", (1024,)))
        options = PublisherOptions(memory_full_timeout=60, check_memory=False)
        async with ScanPublisher(url, doc(2), [channel], options=options) as pub:
            for i in range(8):
                await channel.emit(np.full((ROWS, 1024), i, dtype="f8"))
            await wait_until(lambda: pub.status.state == "memory_full", timeout=20)
            assert "OOM" in pub.status.message or "maxmemory" in pub.status.message
            status = await MemoryGuard(client, threshold=0.5).check()
            assert status.trimmed_entries >= 6
            await pub.close()
        entries = await client.xrange(pub.stream_keys["spectrum"])
        starts = [int(e[0].split(b"-")[0]) for e in entries]
        assert starts == [i * ROWS for i in range(9)]  # 8 entries and the seal
        firsts = [np.frombuffer(f[b"d"], "<f8")[0] for _, f in entries[:-1]]
        assert firsts == list(range(8))

        # No room is ever made: the scan fails after memory_full_timeout, clearly.
        channel = Channel(ChannelSpec("spectrum", "float64", (1024,)))
        options = PublisherOptions(memory_full_timeout=0.5, check_memory=False, close_timeout=2)
        with anyio.fail_after(30), pytest.raises(DataPublishError, match="full of unwritten"):
            async with ScanPublisher(url, doc(3), [channel], options=options):
                for i in range(20):
                    await channel.emit(np.full((ROWS, 1024), i, dtype="f8"))
                    await anyio.sleep(0.01)
    finally:
        await client.aclose()
        server.stop()
