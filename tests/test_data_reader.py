"""The reader API: DataStore, ScanView, ChannelView, cursors, errors, fallbacks, sync facade."""

from __future__ import annotations

import json
import sys
import textwrap

import anyio
import numpy as np
import pytest
import redis.asyncio as aredis

from blissng.acquisition import Channel, ChannelSpec
from blissng.data import (
    DataGone,
    DataStore,
    EndOfData,
    NotYetAvailable,
    ScanDocument,
    ScanNotFound,
    ScanPublisher,
    SyncDataStore,
    acknowledge,
    register_fallback,
    unregister_fallback,
)

pytestmark = pytest.mark.anyio


def doc(number: int = 1, session: str = "demo", **kw) -> ScanDocument:
    return ScanDocument(session=session, number=number, name="loopscan", dataset="ds", **kw)


async def publish(url: str, values: dict[str, np.ndarray], step: int = 4, **doc_kw):
    """Publish a whole scan; return the publisher."""
    channels = [Channel(ChannelSpec(name, v.dtype.str, v.shape[1:])) for name, v in values.items()]
    async with ScanPublisher(url, doc(**doc_kw), channels) as pub:
        n = len(next(iter(values.values())))
        for start in range(0, n, step):
            for ch in channels:
                await ch.emit(values[ch.name][start : start + step])
            await pub.flushed()
        await pub.close()
    return pub


class FileReader:
    """A file fallback in memory: what the writer's file of one scan would hold."""

    def __init__(self, document, values: dict[str, np.ndarray]) -> None:
        self.document = document
        self.values = values
        self.calls: list[tuple] = []

    async def scan_document(self, scan_id):
        return self.document if scan_id == self.document["id"] else None

    async def read(self, document, channel, start, stop):
        self.calls.append((document["id"], channel, start, stop))
        if document["id"] != self.document["id"] or stop > len(self.values[channel]):
            return None
        return self.values[channel][start:stop]

    async def length(self, document, channel):
        return len(self.values[channel]) if document["id"] == self.document["id"] else None


async def test_random_access(redis_urls):
    values = {
        "x": np.arange(50, dtype="<f8"),
        "spectrum": np.arange(50 * 8, dtype="<i4").reshape(50, 8),
    }
    pub = await publish(redis_urls.data, values, step=7)
    async with DataStore(redis_urls.data) as store:
        scan = await store.get_scan(pub.scan_id)
        assert (scan.session, scan.number, scan.name, scan.state) == (
            "demo",
            1,
            "loopscan",
            "closed",
        )
        assert scan.end_reason == "success" and scan.error is None
        x, spectrum = scan["x"], scan["spectrum"]
        assert await x.length() == 50 and await x.sealed()
        assert await x[0] == 0.0
        assert await x[13] == 13.0  # inside an entry of 7 points
        assert await x[-1] == 49.0
        np.testing.assert_array_equal(await x[5:23], values["x"][5:23])  # across entries
        np.testing.assert_array_equal(await x[::10], values["x"][::10])
        np.testing.assert_array_equal(await x[40:100], values["x"][40:])  # cut at the seal
        np.testing.assert_array_equal(await spectrum[3], values["spectrum"][3])
        np.testing.assert_array_equal(await spectrum[10:20], values["spectrum"][10:20])
        assert (await spectrum[10:20]).shape == (10, 8)
        with pytest.raises(EndOfData, match="50 points"):
            await x[50]
        with pytest.raises(EndOfData):
            await x[60:70]
        with pytest.raises(KeyError, match="no channel 'y'"):
            scan["y"]


async def test_not_yet_available_then_arrives(redis_urls):
    channel = Channel(ChannelSpec("x", "float64"))
    async with DataStore(redis_urls.data) as store:
        async with ScanPublisher(redis_urls.data, doc(), [channel]) as pub:
            scan = await store.get_scan(pub.scan_id)
            with pytest.raises(NotYetAvailable):
                await scan["x"][0]
            await channel.emit([1.0, 2.0, 3.0])
            await pub.flushed()
            assert await scan["x"][2] == 3.0
            with pytest.raises(NotYetAvailable, match="point 3"):
                await scan["x"][3]
            with pytest.raises(NotYetAvailable):
                await scan["x"][1:5]
            await pub.close()
        with pytest.raises(EndOfData):
            await scan["x"][3]


async def test_trimmed_and_expired_data_is_gone_unless_a_file_has_it(redis_urls):
    values = {"x": np.arange(40, dtype="<f8")}
    pub = await publish(redis_urls.data, values, step=5)
    client = aredis.Redis.from_url(redis_urls.data)
    try:
        # the writer has 20 points on disk; data up to there is trimmed (XTRIM MINID)
        await acknowledge(client, pub.scan_id, {"x": 20})
        await client.xtrim(pub.stream_keys["x"], minid="20-1", approximate=False)
        async with DataStore(redis_urls.data) as store:
            scan = await store.get_scan(pub.scan_id)
            with pytest.raises(DataGone, match="trimmed"):
                await scan["x"][3]
            with pytest.raises(DataGone):
                await scan["x"][15:25]
            np.testing.assert_array_equal(await scan["x"][20:30], values["x"][20:30])
            cursor = scan["x"].cursor()
            with pytest.raises(DataGone, match="trimmed"):
                await cursor.read(timeout=1)

            # A file reader (the writer registers one) fills in what Redis lost.
            reader = FileReader(scan.document, values)
            register_fallback(reader)
            try:
                np.testing.assert_array_equal(await scan["x"][15:25], values["x"][15:25])
                assert reader.calls == [(scan.id, "x", 15, 25)]
                # the scan expires from Redis entirely
                await client.delete(*[pub.key, f"{pub.key}:state", *pub.stream_keys.values()])
                expired = await store.get_scan(pub.scan_id)  # from the file
                assert expired.expired and expired.number == 1
                np.testing.assert_array_equal(await expired["x"][0:40], values["x"])
            finally:
                unregister_fallback(reader)
            with pytest.raises(ScanNotFound, match="not in the data Redis"):
                await store.get_scan(pub.scan_id)
            with pytest.raises(DataGone, match="expired"):
                await scan["x"][25]
    finally:
        await client.aclose()


async def test_cursors_follow_live(redis_urls):
    a, b = Channel(ChannelSpec("a", "float64")), Channel(ChannelSpec("b", "int32", (3,)))
    got_a: list[np.ndarray] = []
    got_scan: dict[str, list[np.ndarray]] = {"a": [], "b": []}
    started = anyio.Event()

    async with DataStore(redis_urls.data) as store:

        async def follow_channel(scan) -> None:
            async for batch in scan["a"].cursor():
                got_a.append(batch)

        async def follow_scan(scan) -> None:
            async for update in scan.cursor():
                for name, batch in update.items():
                    got_scan[name].append(batch)

        async def discover() -> None:
            async for scan in store.follow("demo"):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(follow_channel, scan)
                    tg.start_soon(follow_scan, scan)
                    started.set()
                return

        async with anyio.create_task_group() as tg:
            tg.start_soon(discover)
            await anyio.sleep(0.05)  # let follow() take its starting point
            async with ScanPublisher(redis_urls.data, doc(), [a, b]) as pub:
                await started.wait()
                for i in range(100):
                    await a.emit(float(i))
                    await b.emit([i, i, i])
                    if i % 10 == 0:
                        await pub.flushed()
                await pub.close()
    np.testing.assert_array_equal(np.concatenate(got_a), np.arange(100))
    np.testing.assert_array_equal(np.concatenate(got_scan["a"]), np.arange(100))
    np.testing.assert_array_equal(np.concatenate(got_scan["b"])[:, 0], np.arange(100))
    assert len(got_a) > 1


async def test_cursor_from_the_middle_and_timeout(redis_urls):
    channel = Channel(ChannelSpec("x", "float64"))
    async with DataStore(redis_urls.data) as store:
        async with ScanPublisher(redis_urls.data, doc(), [channel]) as pub:
            await channel.emit(np.arange(10.0))
            await pub.flushed()
            await channel.emit(np.arange(10.0, 20.0))
            await pub.flushed()
            scan = await store.get_scan(pub.scan_id)
            cursor = scan["x"].cursor(start=13)
            np.testing.assert_array_equal(await cursor.read(timeout=5), np.arange(13.0, 20.0))
            with anyio.fail_after(5):
                empty = await cursor.read(timeout=0.05)
            assert empty.shape == (0,)
            await channel.emit([20.0])
            np.testing.assert_array_equal(await cursor.read(timeout=5), [20.0])
            await pub.close()
        with pytest.raises(EndOfData, match="21 points"):
            await cursor.read(timeout=5)
        assert cursor.position == 21


async def test_list_last_and_wait_state(redis_urls):
    values = {"x": np.arange(3.0)}
    first = await publish(redis_urls.data, values, number=1)
    await publish(redis_urls.data, values, number=2, session="other")
    third = await publish(redis_urls.data, values, number=3)
    async with DataStore(redis_urls.data) as store:
        assert [s.number for s in await store.scans()] == [1, 2, 3]
        assert [s.number for s in await store.scans("demo")] == [1, 3]
        assert (await store.last_scan("demo")).id == third.scan_id
        assert (await store.last_scan("other")).number == 2
        assert (await store.get_scan(f"blissng:scan:{first.scan_id}")).id == first.scan_id
        with pytest.raises(ScanNotFound):
            await store.last_scan("nobody")
        # wait_state on a closed scan returns at once; on a live one, when it gets there
        scan = await store.get_scan(first.scan_id)
        assert await scan.wait_state("started", timeout=5) == "closed"
        channel = Channel(ChannelSpec("x", "float64"))
        async with ScanPublisher(redis_urls.data, doc(4), [channel]) as pub:
            live = await store.get_scan(pub.scan_id)
            with pytest.raises(TimeoutError):
                await live.wait_state("started", timeout=0.1)
            async with anyio.create_task_group() as tg:
                result: list[str] = []

                async def waiter() -> None:
                    result.append(await live.wait_state("started", timeout=10))

                tg.start_soon(waiter)
                await pub.set_state("started")
            assert result == ["started"] and live.state == "started"
            await pub.close()


async def test_sync_facade_from_a_thread(redis_urls):
    values = {"x": np.arange(30.0), "y": np.arange(60, dtype="<i8").reshape(30, 2)}
    pub = await publish(redis_urls.data, values, step=4)

    def script() -> None:
        with SyncDataStore(redis_urls.data) as store:
            scan = store.last_scan("demo")
            assert scan.id == pub.scan_id and scan.state == "closed"
            x = scan["x"]
            assert len(x) == 30
            assert x[7] == 7.0
            np.testing.assert_array_equal(x[5:9], values["x"][5:9])
            np.testing.assert_array_equal(scan.channels["y"][29], [58, 59])
            with pytest.raises(EndOfData):
                x[30]
            np.testing.assert_array_equal(np.concatenate(list(x.cursor())), values["x"])
            assert [s.number for s in store.scans()] == [1]

    await anyio.to_thread.run_sync(script)


FOLLOWER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from blissng.data import SyncDataStore

    with SyncDataStore(sys.argv[1]) as store:
        follow = store.follow("demo")
        print("ready", flush=True)
        scan = next(follow)
        data = {"a": [], "b": []}
        for update in scan.cursor():
            for name, batch in update.items():
                data[name].append(batch.tolist())
        scan.refresh()
        print(json.dumps({"id": scan.id, "state": scan.state, "updates": len(data["a"]),
                          "a": sum(data["a"], []), "b": sum(data["b"], [])}), flush=True)
    """
)


@pytest.mark.timeout(120)
async def test_live_follow_from_a_second_process(redis_urls, tmp_path):
    script = tmp_path / "follower.py"
    script.write_text(FOLLOWER)
    a, b = Channel(ChannelSpec("a", "float64")), Channel(ChannelSpec("b", "uint16", (2,)))
    async with await anyio.open_process([sys.executable, str(script), redis_urls.data]) as proc:
        assert proc.stdout is not None
        lines = proc.stdout
        buffer = b""
        with anyio.fail_after(60):
            while b"ready\n" not in buffer:
                buffer += await lines.receive()
        await anyio.sleep(0.1)  # the follower blocks on XREAD with its starting point taken
        async with ScanPublisher(redis_urls.data, doc(), [a, b]) as pub:
            for i in range(300):
                await a.emit(i * 0.5)
                await b.emit([i, 2 * i])
                if i % 30 == 0:
                    await pub.flushed()
            await pub.close()
        with anyio.fail_after(60):
            while not buffer.endswith(b"}\n"):
                buffer += await lines.receive()
        await proc.wait()
    result = json.loads(buffer.split(b"ready\n", 1)[1])
    assert result["id"] == pub.scan_id
    assert result["state"] == "closed"
    assert result["a"] == [i * 0.5 for i in range(300)]
    assert result["b"] == [[i, 2 * i] for i in range(300)]


async def test_random_slices_match_numpy(redis_urls):
    """Random batch sizes (merged into entries by the publisher), random reads: every read
    equals the same slice of the emitted array."""
    rng = np.random.default_rng(7)
    reference = rng.random((1000, 3))
    channel = Channel(ChannelSpec("v", "float64", (3,)))
    async with ScanPublisher(redis_urls.data, doc(), [channel]) as pub:
        start = 0
        while start < len(reference):
            size = int(rng.integers(1, 60))
            await channel.emit(reference[start : start + size])
            start += size
            if rng.random() < 0.3:
                await pub.flushed()
        await pub.close()
    async with DataStore(redis_urls.data) as store:
        v = (await store.get_scan(pub.scan_id))["v"]
        assert await v.length() == 1000
        for _ in range(200):
            a, b = sorted(int(x) for x in rng.integers(0, 1001, size=2))
            np.testing.assert_array_equal(await v[a:b], reference[a:b])
            if a < 1000:
                np.testing.assert_array_equal(await v[a], reference[a])
        cursor = v.cursor(start=int(rng.integers(0, 1000)))
        first = cursor.position
        got = [batch async for batch in cursor]
        np.testing.assert_array_equal(np.concatenate(got), reference[first:])


async def trim_to_seal(client: aredis.Redis, key: str) -> None:
    """What the memory guard does to a written scan: ``XTRIM key MINID <the seal's id>``."""
    seal_id = (await client.xrevrange(key, "+", "-", count=1))[0][0]
    await client.xtrim(key, minid=seal_id, approximate=False)


async def read_to_the_end(cursor, rounds: int = 50) -> dict[str, np.ndarray]:
    """Every point a ScanCursor returns until it is finished, in at most ``rounds`` reads: a
    cursor that answers nothing forever fails the test instead of hanging it."""
    got: dict[str, list[np.ndarray]] = {}
    with anyio.fail_after(30):
        for _ in range(rounds):
            if cursor.finished:
                break
            for name, batch in (await cursor.read(timeout=1)).items():
                got.setdefault(name, []).append(batch)
    assert cursor.finished, f"not finished after {rounds} reads; positions {cursor.positions}"
    with pytest.raises(EndOfData):
        await cursor.read(timeout=1)
    return {name: np.concatenate(parts) for name, parts in got.items()}


async def read_channel_to_the_end(cursor, rounds: int = 50) -> np.ndarray:
    """The same for a ChannelCursor: its points until EndOfData, in at most ``rounds`` reads."""
    parts = []
    with anyio.fail_after(30):
        for _ in range(rounds):
            try:
                parts.append(await cursor.read(timeout=1))
            except EndOfData:
                return np.concatenate(parts) if parts else np.zeros(0)
    raise AssertionError(f"no EndOfData after {rounds} reads (position {cursor.position})")


async def test_a_stream_trimmed_to_its_seal_reads_from_the_file_and_ends(redis_urls):
    """Issue 12, finding 1: cursors on a stream the memory guard trimmed to its seal returned
    nothing at once, forever, without yielding to the loop."""
    values = {"x": np.arange(100.0)}
    pub = await publish(redis_urls.data, values, step=10)
    key = pub.stream_keys["x"]
    client = aredis.Redis.from_url(redis_urls.data)
    try:
        await trim_to_seal(client, key)
        assert await client.xrange(key) == [(b"100-1", {b"end": b"100"})]
    finally:
        await client.aclose()
    async with DataStore(redis_urls.data) as store:
        scan = await store.get_scan(pub.scan_id)
        x = scan["x"]
        assert await x.length() == 100 and await x.sealed()
        # No file: every read says the points are gone (never an empty answer forever).
        cursor, channel_cursor = scan.cursor(), x.cursor()
        with anyio.fail_after(10):
            for _ in range(3):
                with pytest.raises(DataGone, match="trimmed"):
                    await cursor.read(timeout=1)
                with pytest.raises(DataGone, match="trimmed"):
                    await channel_cursor.read(timeout=1)
        assert not cursor.finished
        with pytest.raises(DataGone):
            await x.get(0)
        reader = FileReader(scan.document, values)
        register_fallback(reader)
        try:
            # The same cursors now read the file, then end.
            np.testing.assert_array_equal((await read_to_the_end(cursor))["x"], values["x"])
            np.testing.assert_array_equal(
                await read_channel_to_the_end(channel_cursor), values["x"]
            )
            np.testing.assert_array_equal(
                await read_channel_to_the_end(x.cursor(start=60)), values["x"][60:]
            )
            assert len(await read_channel_to_the_end(x.cursor(start=100))) == 0
            # Random access: from the file, cut at the seal, EndOfData past it.
            np.testing.assert_array_equal(await x.get(0), values["x"])
            assert await x[5] == 5.0 and await x[-1] == 99.0
            np.testing.assert_array_equal(await x[90:200], values["x"][90:])
            np.testing.assert_array_equal(await x[::25], values["x"][::25])
            with pytest.raises(EndOfData, match="100 points"):
                await x[100]
            with pytest.raises(EndOfData):
                await x.get(100, 120)
        finally:
            unregister_fallback(reader)


async def test_a_channel_without_points_is_its_seal_alone(redis_urls):
    channel = Channel(ChannelSpec("x", "float64"))
    async with ScanPublisher(redis_urls.data, doc(), [channel]) as pub:
        await channel.end()
        await pub.close()
    async with DataStore(redis_urls.data) as store:
        scan = await store.get_scan(pub.scan_id)
        x = scan["x"]
        assert await x.length() == 0 and await x.sealed()
        assert (await x.get(0)).shape == (0,)
        assert (await x[:]).shape == (0,)
        with pytest.raises(EndOfData):
            await x[0]
        assert await read_to_the_end(scan.cursor()) == {}
        assert len(await read_channel_to_the_end(x.cursor())) == 0


async def test_a_live_stream_trimmed_at_its_start_reads_the_gap_from_the_file(redis_urls):
    """The publisher trims what the writer acknowledged while the scan runs: a reader that
    starts late reads the trimmed points from the file, the rest from Redis, live."""
    channel = Channel(ChannelSpec("x", "float64"))
    values = {"x": np.arange(60.0)}
    client = aredis.Redis.from_url(redis_urls.data)
    async with DataStore(redis_urls.data) as store:
        async with ScanPublisher(redis_urls.data, doc(), [channel]) as pub:
            for start in range(0, 40, 5):
                await channel.emit(values["x"][start : start + 5])
                await pub.flushed()
            await client.xtrim(pub.stream_keys["x"], minid="20-1", approximate=False)
            scan = await store.get_scan(pub.scan_id)
            reader = FileReader(scan.document, values)
            register_fallback(reader)
            try:
                cursor, channel_cursor = scan.cursor(), scan["x"].cursor()
                with anyio.fail_after(10):
                    first = await cursor.read(timeout=5)
                    np.testing.assert_array_equal(first["x"], values["x"][:40])
                    np.testing.assert_array_equal(
                        await channel_cursor.read(timeout=5), values["x"][:40]
                    )
                    np.testing.assert_array_equal(await scan["x"][10:30], values["x"][10:30])
                    assert await scan["x"].length() == 40
                    empty = await cursor.read(timeout=0.05)  # nothing new yet
                    assert empty == {} and not cursor.finished
                await channel.emit(values["x"][40:])
                await pub.close()
                rest = await read_to_the_end(cursor)
                np.testing.assert_array_equal(rest["x"], values["x"][40:])
                np.testing.assert_array_equal(
                    await read_channel_to_the_end(channel_cursor), values["x"][40:]
                )
            finally:
                unregister_fallback(reader)
    await client.aclose()


async def test_every_read_path_of_an_expired_scan_reads_the_file(redis_urls):
    """Issue 12, finding 2: once a scan's keys expired, ``length()`` and ``get(start)`` raised
    DataGone instead of reading the file (``get(0, 10)`` worked)."""
    values = {"x": np.arange(40.0), "s": np.arange(80, dtype="<i4").reshape(40, 2)}
    pub = await publish(redis_urls.data, values, step=7)
    client = aredis.Redis.from_url(redis_urls.data)
    async with DataStore(redis_urls.data, reconnect_timeout=0.5) as store:
        before = await store.get_scan(pub.scan_id)  # a view taken while it was in Redis
        keys = [k async for k in client.scan_iter(match=f"{pub.key}*")]
        await client.delete(*keys)  # as when the TTL runs out
        await client.aclose()
        # No file knows it: every path says it is gone.
        with pytest.raises(DataGone, match="expired"):
            await before["x"].length()
        with pytest.raises(DataGone, match="expired"):
            await before["x"].get(0)
        with anyio.fail_after(20), pytest.raises(DataGone, match="expired"):
            for _ in range(20):  # within reconnect_timeout a restart may still bring it back
                await before.cursor().read(timeout=0.2)
        reader = FileReader(before.document, values)
        register_fallback(reader)
        try:
            after = await store.get_scan(pub.scan_id)
            assert after.expired
            for scan in (before, after):
                x, s = scan["x"], scan["s"]
                assert await x.length() == 40 and await x.sealed()
                np.testing.assert_array_equal(await x.get(0), values["x"])
                np.testing.assert_array_equal(await s.get(0), values["s"])
                np.testing.assert_array_equal(await x.get(30, 100), values["x"][30:])
                np.testing.assert_array_equal(await x[-3:], values["x"][-3:])
                np.testing.assert_array_equal(await x[:], values["x"])
                np.testing.assert_array_equal(await s[-1], values["s"][-1])
                with pytest.raises(EndOfData, match="40 points"):
                    await x[40]
                got = await read_to_the_end(scan.cursor())
                np.testing.assert_array_equal(got["x"], values["x"])
                np.testing.assert_array_equal(got["s"], values["s"])
                np.testing.assert_array_equal(
                    await read_channel_to_the_end(x.cursor(start=12)), values["x"][12:]
                )
        finally:
            unregister_fallback(reader)


async def test_a_cursor_reads_a_long_stream_in_bounded_steps(redis_urls):
    """``read(count=N)``: at most N stream entries (batches) per channel in one XREAD."""
    values = {"x": np.arange(100, dtype="<f8"), "y": np.arange(100, dtype="<f8") * 2}
    pub = await publish(redis_urls.data, values, step=10)  # 10 entries per channel
    async with DataStore(redis_urls.data) as store:
        scan = await store.get_scan(pub.scan_id)
        cursor = scan.cursor(["x", "y"])
        sizes = []
        while not cursor.finished:
            update = await cursor.read(timeout=1.0, count=3)
            if update:
                assert len(update["x"]) == len(update["y"]) <= 30  # 3 entries of 10
                sizes.append(len(update["x"]))
        assert sum(sizes) == 100 and len(sizes) >= 4
        channel = scan["x"].cursor()
        assert len(await channel.read(timeout=1.0, count=2)) == 20
