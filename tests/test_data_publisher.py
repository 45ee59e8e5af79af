"""The publisher writes a scan into Redis exactly as docs/data-model.md says.

These tests read Redis with nothing but redis-py and the documented layout.
"""

from __future__ import annotations

import json

import anyio
import numpy as np
import pytest
import redis.asyncio as aredis

from blissng.acquisition import REFERENCE_DTYPE, Channel, ChannelSpec
from blissng.data import DataPublishError, PublisherOptions, ScanDocument, ScanPublisher

pytestmark = pytest.mark.anyio


def make_channels() -> list[Channel]:
    return [
        Channel(ChannelSpec("m1", "float64", unit="mm", device="m1")),
        Channel(ChannelSpec("diode", "float32", device="sim1")),
        Channel(ChannelSpec("mca1:spectrum", "uint32", shape=(16,), device="mca1")),
        Channel(ChannelSpec("cam1:image", "reference", device="cam1", kind="reference")),
    ]


def make_document(**kw: object) -> ScanDocument:
    values: dict[str, object] = {
        "session": "demo",
        "number": 7,
        "name": "ascan",
        "title": "ascan m1 0 1 9 0.1",
        "dataset": "/data/sample_0001",
        "path": "/data/sample_0001/sample_0001.h5",
        "npoints": 10,
        "motors": [{"name": "m1", "start": 0.0, "stop": 1.0, "unit": "mm"}],
        "metadata": {"user": "test"},
    }
    values.update(kw)
    return ScanDocument(**values)  # type: ignore[arg-type]


def expected_values(npoints: int) -> dict[str, np.ndarray]:
    refs = np.zeros(npoints, dtype=REFERENCE_DTYPE)
    refs["file"] = b"/data/cam1_0001.h5"
    refs["dataset"] = b"/entry/data"
    refs["index"] = np.arange(npoints)
    return {
        "m1": np.linspace(0, 1, npoints),
        "diode": np.arange(npoints, dtype="float32") * 1.5,
        "mca1:spectrum": np.arange(npoints * 16, dtype="uint32").reshape(npoints, 16),
        "cam1:image": refs,
    }


async def emit_scan(channels: list[Channel], values: dict[str, np.ndarray], step: int) -> None:
    """Emit in batches of ``step`` points (1 = per-point emits)."""
    npoints = len(next(iter(values.values())))
    for start in range(0, npoints, step):
        for channel in channels:
            await channel.emit(values[channel.name][start : start + step])
        await anyio.lowlevel.checkpoint()
    for channel in channels:
        await channel.end()


def decode_stream(entries: list, dtype: np.dtype, shape: tuple[int, ...]) -> tuple:
    """Decode a channel stream by the documented layout: (points, seal length)."""
    parts = []
    expected_index = 0
    seal = None
    for entry_id, fields in entries:
        index, seq = entry_id.decode().split("-")
        assert seq == "1"
        assert seal is None, "no entry after the seal"
        if b"end" in fields:
            seal = int(fields[b"end"])
            assert int(index) == seal
            assert b"d" not in fields
            continue
        assert int(index) == expected_index, "entries are consecutive, without gap"
        n = int(fields[b"n"])
        parts.append(np.frombuffer(fields[b"d"], dtype).reshape(n, *shape))
        expected_index += n
    data = np.concatenate(parts) if parts else np.zeros((0, *shape), dtype)
    return data, seal


@pytest.mark.parametrize("step", [1, 3])
async def test_scan_appears_in_redis_as_documented(redis_urls, step):
    channels = make_channels()
    values = expected_values(10)
    async with ScanPublisher(redis_urls.data, make_document(), channels) as pub:
        await pub.set_state("prepared")
        await pub.set_state("started")
        await emit_scan(channels, values, step)
        await pub.set_state("stopped")
        await pub.close("success")
    client = aredis.Redis.from_url(redis_urls.data)
    try:
        sid = pub.scan_id
        assert pub.key == f"blissng:scan:{sid}"
        scan = await client.hgetall(f"blissng:scan:{sid}")
        assert scan[b"id"].decode() == sid
        assert scan[b"state"] == b"closed"
        assert scan[b"end_reason"] == b"success"
        assert float(scan[b"end_time"]) >= float(scan[b"start_time"])
        doc = json.loads(scan[b"doc"])
        assert doc["session"] == "demo" and doc["number"] == 7 and doc["name"] == "ascan"
        assert doc["npoints"] == 10 and doc["save"] is True
        assert doc["dataset"] == "/data/sample_0001"
        assert doc["motors"][0]["name"] == "m1"
        assert doc["metadata"] == {"user": "test"}
        assert doc["retention"] == {"written_ttl": 300, "unsaved_ttl": 300, "dataset_ttl": 86400}
        assert doc["channels"]["m1"]["dtype"] == "<f8"
        assert doc["channels"]["m1"]["unit"] == "mm"
        assert doc["channels"]["mca1:spectrum"]["shape"] == [16]
        assert doc["channels"]["cam1:image"]["dtype"] == "reference"
        # state stream: explicit ids <seq>-1
        states = await client.xrange(f"blissng:scan:{sid}:state")
        assert [e[0] for e in states] == [b"0-1", b"1-1", b"2-1", b"3-1", b"4-1"]
        assert [e[1][b"state"] for e in states] == [
            b"created",
            b"prepared",
            b"started",
            b"stopped",
            b"closed",
        ]
        assert states[-1][1][b"end_reason"] == b"success"
        # channel streams
        for name, channel in doc["channels"].items():
            assert channel["key"] == f"blissng:scan:{sid}:data:{name}"
            dtype = (
                REFERENCE_DTYPE if channel["dtype"] == "reference" else np.dtype(channel["dtype"])
            )
            data, seal = decode_stream(
                await client.xrange(channel["key"]), dtype, tuple(channel["shape"])
            )
            assert seal == 10
            np.testing.assert_array_equal(data, values[name])
        # announcement and data set keys
        announced = await client.xrange("blissng:scans")
        assert len(announced) == 1
        assert announced[0][1][b"id"].decode() == sid
        assert announced[0][1][b"session"] == b"demo"
        assert await client.lrange("blissng:dataset:/data/sample_0001:scans", 0, -1) == [
            sid.encode()
        ]
        assert 0 < await client.ttl("blissng:dataset:/data/sample_0001") <= 86400
        # a saved scan has no TTL until written
        assert await client.ttl(f"blissng:scan:{sid}") == -1
    finally:
        await client.aclose()


async def test_follow_live_with_plain_redis_py(redis_urls):
    """A reader that knows only the documented layout follows the scan while it runs."""
    channels = make_channels()[:2]
    values = expected_values(200)
    received: dict[str, list[np.ndarray]] = {"m1": [], "diode": []}
    seals: dict[str, int] = {}
    announced = anyio.Event()
    scan_id: list[str] = []

    async def follower() -> None:
        client = aredis.Redis.from_url(redis_urls.data)
        try:
            # discover the scan from the new-scans stream
            while True:
                found = await client.xread({"blissng:scans": "0-0"}, block=100)
                if found:
                    scan_id.append(found[0][1][0][1][b"id"].decode())
                    break
            announced.set()
            doc = json.loads(await client.hget(f"blissng:scan:{scan_id[0]}", "doc"))
            last = {ch["key"]: "0-0" for ch in doc["channels"].values()}
            by_key = {ch["key"]: ch for ch in doc["channels"].values()}
            while last:
                found = await client.xread(last, block=100)
                for key, entries in found:
                    ch = by_key[key.decode()]
                    for entry_id, fields in entries:
                        last[key.decode()] = entry_id
                        if b"end" in fields:
                            seals[ch["name"]] = int(fields[b"end"])
                            del last[key.decode()]
                        else:
                            received[ch["name"]].append(
                                np.frombuffer(fields[b"d"], ch["dtype"]).reshape(
                                    int(fields[b"n"]), *ch["shape"]
                                )
                            )
        finally:
            await client.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(follower)
        async with ScanPublisher(redis_urls.data, make_document(), channels) as pub:
            await announced.wait()
            for i in range(200):
                for channel in channels:
                    await channel.emit(values[channel.name][i])
                if i % 10 == 0:
                    await anyio.sleep(0.001)  # an acquisition waits on hardware
            for channel in channels:
                await channel.end()
            await pub.close()
    assert scan_id == [pub.scan_id]
    assert seals == {"m1": 200, "diode": 200}
    for name in received:
        np.testing.assert_array_equal(np.concatenate(received[name]), values[name])
        assert len(received[name]) > 1, "the follower saw the scan progress, not only its end"


async def test_abort_and_failure_close_the_scan(redis_urls):
    channels = make_channels()[:1]
    client = aredis.Redis.from_url(redis_urls.data)
    try:
        with anyio.CancelScope() as scope:
            async with ScanPublisher(redis_urls.data, make_document(number=1), channels) as pub:
                await channels[0].emit([1.0, 2.0])
                scope.cancel()
                await anyio.sleep_forever()
        assert await client.hget(pub.key, "end_reason") == b"aborted"
        entries = await client.xrange(pub.stream_keys["m1"])
        assert entries[-1] == (b"2-1", {b"end": b"2"})

        channels = make_channels()[:1]
        with pytest.raises(ZeroDivisionError):
            async with ScanPublisher(redis_urls.data, make_document(number=2), channels) as pub2:
                await channels[0].emit([1.0])
                1 / 0  # noqa: B018
        assert await client.hget(pub2.key, "end_reason") == b"failed"
        assert b"ZeroDivisionError" in await client.hget(pub2.key, "error")
        assert (await client.xrange(pub2.stream_keys["m1"]))[-1][1] == {b"end": b"1"}
    finally:
        await client.aclose()


async def test_bad_emits_are_clear_errors(redis_urls):
    spec = ChannelSpec("m1", "float64")
    async with ScanPublisher(redis_urls.data, make_document(), [Channel(spec)]) as pub:
        with pytest.raises(DataPublishError, match="expected 0"):
            await pub.put(spec, 5, np.zeros(1))
        with pytest.raises(DataPublishError, match="not declared"):
            await pub.put(ChannelSpec("other", "float64"), 0, np.zeros(1))
        with pytest.raises(ValueError, match="cannot go back"):
            await pub.set_state("started")
            await pub.set_state("prepared")
    with pytest.raises(ValueError, match="unknown fields"):
        ScanDocument.from_any({"session": "s", "number": 1, "name": "x", "colour": "red"})


async def test_backpressure_bounds_the_buffer(redis_urls):
    """A small buffer: emits wait for the flush, memory stays bounded, nothing lost."""
    spec = ChannelSpec("spectrum", "float64", shape=(1000,))
    channel = Channel(spec)
    options = PublisherOptions(buffer_bytes=64_000)
    peak = 0
    async with ScanPublisher(redis_urls.data, make_document(), [channel], options=options) as pub:
        for i in range(100):
            await channel.emit(np.full((1, 1000), i, dtype="float64"))
            peak = max(peak, pub.status.buffered_bytes)
        await channel.end()
        await pub.close()
    assert peak <= 64_000 + 8000
    client = aredis.Redis.from_url(redis_urls.data)
    try:
        data, seal = decode_stream(
            await client.xrange(pub.stream_keys["spectrum"]), np.dtype("<f8"), (1000,)
        )
    finally:
        await client.aclose()
    assert seal == 100
    np.testing.assert_array_equal(data[:, 0], np.arange(100))


async def test_leaving_the_block_does_not_wait_for_the_next_acknowledgement_round(redis_urls):
    """Points pouring in until close(): the flush task, caught in its pacing sleep when the
    block is left, must see it then, not at its next round (ack_interval later)."""
    options = PublisherOptions(ack_interval=60.0)
    channels = [Channel(ChannelSpec(f"c{i}", "float64")) for i in range(10)]
    with anyio.fail_after(30):
        for number in range(3):
            async with ScanPublisher(
                redis_urls.data, make_document(number=number), channels, options=options
            ) as pub:
                for _ in range(2000):
                    for channel in channels:
                        await channel.emit(1.5)
                    await anyio.lowlevel.checkpoint()
                for channel in channels:
                    await channel.end()
                await pub.close()
            channels = [Channel(channel.spec) for channel in channels]
