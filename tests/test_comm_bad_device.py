"""The bad device (its own process): a reader that keeps up loses nothing; a reader whose event
loop is blocked for 200 ms loses packets, and the device reports exactly those."""

from __future__ import annotations

import time

import anyio
import pytest

from blissng.comm import Connection, ProtocolError, connection_from_url
from blissng.sim import BAD_DEVICE_FIFO, BAD_DEVICE_RATE, SimHost

pytestmark = pytest.mark.anyio


class StreamReader:
    """Reads the device's packets and the sequence gaps it sees."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.received = 0
        self.gaps = 0
        self.last = -1

    def take(self, line: str) -> None:
        seq = int(line.split()[0])
        assert seq > self.last, f"packet {seq} after {self.last}"
        self.gaps += seq - self.last - 1
        self.last = seq
        self.received += 1

    async def read_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.take(await self.conn.readline())

    async def stop(self) -> tuple[int, int]:
        """STOP, read what is left; (produced, dropped) from the END line. Packets dropped
        after the last one received count as gaps too."""
        await self.conn.write("STOP")
        while True:
            line = await self.conn.readline()
            if line.startswith("END"):
                _, produced, dropped = line.split()
                self.gaps += int(produced) - 1 - self.last
                return int(produced), int(dropped)
            self.take(line)


async def start(bad_device: SimHost) -> StreamReader:
    conn = connection_from_url(bad_device.url("bad"), name="bad", timeout=2.0)
    assert await conn.write_readline("*IDN?") == "SIMBAD 1.0"
    assert await conn.write_readline("START") == "OK"
    return StreamReader(conn)


async def test_a_reader_that_keeps_up_loses_nothing(bad_device: SimHost) -> None:
    reader = await start(bad_device)
    try:
        await reader.read_for(0.8)
        produced, dropped = await reader.stop()
    finally:
        await reader.conn.close()
    stats = await bad_device.stats("bad")
    assert stats["rate"] == BAD_DEVICE_RATE and stats["fifo"] == BAD_DEVICE_FIFO
    assert dropped == 0 and stats["dropped"] == 0, stats
    assert reader.gaps == 0
    assert reader.received == produced >= 0.7 * 0.8 * BAD_DEVICE_RATE


async def test_a_reader_whose_loop_is_blocked_200ms_sees_drops_reported(
    bad_device: SimHost,
) -> None:
    reader = await start(bad_device)
    try:
        await reader.read_for(0.1)
        time.sleep(0.2)  # deliberately block this event loop: nobody reads the device
        await reader.read_for(0.2)
        produced, dropped = await reader.stop()
    finally:
        await reader.conn.close()
    stats = await bad_device.stats("bad")
    assert dropped > 0
    assert stats["dropped"] == dropped
    # The device's count is exactly what the reader is missing.
    assert reader.gaps == dropped
    assert reader.received + dropped == produced


async def test_drop_counter_queryable_while_streaming_and_reset(bad_device: SimHost) -> None:
    reader = await start(bad_device)
    try:
        await reader.read_for(0.05)
        time.sleep(0.3)  # blocked loop again
        stats = await bad_device.stats("bad")  # queried through the control socket, live
        assert stats["streaming"] is True and stats["dropped"] > 0
        await bad_device.reset("bad")
        stats = await bad_device.stats("bad")
        assert stats["dropped"] == 0 and stats["streaming"] is False
    finally:
        await reader.conn.close()


async def test_bad_device_faults(bad_device: SimHost) -> None:
    conn = connection_from_url(bad_device.url("bad"), name="bad", timeout=0.3)
    async with conn:
        await bad_device.fault("bad", "garbage")
        with pytest.raises(ProtocolError, match="'bad'"):
            await conn.write_readline("*IDN?")
        await bad_device.fault("bad", "none")
        assert await conn.write_readline("?DROP") == "0"
        await bad_device.disconnect("bad")
        assert await conn.write_readline("*IDN?") == "SIMBAD 1.0"
        assert conn.connects == 2


async def test_silent_bad_device_sends_nothing_and_counts_drops(bad_device: SimHost) -> None:
    reader = await start(bad_device)
    try:
        await reader.read_for(0.05)
        await bad_device.fault("bad", "silent")
        with anyio.fail_after(5):
            while (await bad_device.stats("bad"))["dropped"] < 20:
                await anyio.sleep(0.01)
        await bad_device.fault("bad", "none")
        await reader.read_for(0.05)
        produced, dropped = await reader.stop()
    finally:
        await reader.conn.close()
    assert dropped >= 20 and reader.gaps == dropped
    assert reader.received + dropped == produced
