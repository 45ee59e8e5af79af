"""Fair scheduling (wall #1 of the design): the good and the bad simulated devices are both
served, through the acquisition chain, while 16 other readers each fetch and decode 64 kB
payloads with 50 ms timeouts.

Held: no reader times out, the good device delivers every point once and in order without
overrun, and the bad device (in its own process, at its default rate) drops nothing.

The simulators are the real servers (``sims``: the standard host process, ``bad_device``: the
bad device's own process); the clients are the devices engineer's controllers.
``benchmarks/loop_stalls.py`` runs the same scenario under the loop monitor.
"""

from __future__ import annotations

import dataclasses

import anyio
import anyio.lowlevel
import numpy as np
import pytest

from blissng.acquisition import (
    AcquirableSlave,
    AcquisitionChain,
    AcquisitionSlave,
    ChannelSpec,
    SoftwareTimerMaster,
    TriggerType,
    decode_in_thread,
    warm_decode_threads,
)
from blissng.comm import CommTimeout
from blissng.health import LoopMonitor
from blissng.sim import SimAddress, SimBadDevice, SimGoodDevice
from blissng.testing import RecordingSink, subscribe

pytestmark = pytest.mark.anyio

READERS = 16
PAYLOAD_POINTS = 8192  # float64: 64 kB per read
READ_PERIOD = 0.2  # each reader fetches one 64 kB payload every 200 ms
READER_TIMEOUT = 0.05  # 50 ms per request
SETUP_TIMEOUT = 2.0  # connecting (17 clients at once) is not what the scenario measures
GOOD_TIMEOUT = 0.5  # the good device's own requests (the 50 ms are the 16 readers')
GOOD_RATE = 5000.0  # points/s of the good device read by the chain
BAD_RATE = 1000.0  # the bad device's default rate (docs/sim-protocols.md)


class PacketStreamSlave(AcquisitionSlave):
    """The bad device as a chain node: a reading loop takes its packets as they arrive, in
    chunks, until ``npoints`` packets; ``stop`` ends the stream and records the device's
    own count of produced and dropped packets."""

    def __init__(self, device: SimBadDevice, npoints: int) -> None:
        super().__init__(device.name, device=device, npoints=npoints)
        self.bad = device
        self.has_reading = True
        self.seq = self.add_channel(ChannelSpec(f"{device.name}:seq", "int64", device=device.name))
        self.value = self.add_channel(
            ChannelSpec(f"{device.name}:value", "float64", device=device.name)
        )
        self.points_read = 0
        self.done: anyio.Event | None = None
        self.end_counts: tuple[int, int] | None = None

    def reset(self) -> None:
        self.done = anyio.Event()
        self.points_read = 0
        self.end_counts = None

    async def start(self) -> None:
        try:
            await self.bad.connect()
            await self.bad.start()  # the device's default rate and fifo
        except Exception as exc:
            raise self.error("start", exc) from exc

    async def reading(self) -> None:
        try:
            while self.points_read < self.npoints:
                try:
                    seqs, values = await self.bad.read_packets(timeout=1.0)
                except Exception as exc:
                    raise self.error("reading", exc) from exc
                keep = min(len(seqs), self.npoints - self.points_read)
                await self.seq.emit(seqs[:keep])
                await self.value.emit(values[:keep])
                self.points_read += keep
                await anyio.lowlevel.checkpoint()
            # Enough packets: end the stream now, or the device would drop what nobody reads.
            await self._stop_stream("reading")
        finally:
            assert self.done is not None
            self.done.set()

    async def _stop_stream(self, phase: str) -> None:
        if self.end_counts is None:
            try:
                self.end_counts = await self.bad.stop()
            except Exception as exc:
                raise self.error(phase, exc) from exc

    async def stop(self) -> None:
        await self._stop_stream("stop")


def decode(raw: np.ndarray, first: int) -> float:
    """The CPU-heavy part of a reader (runs in a worker thread): check the payload is the
    next run of the device's counter, then reduce it (a spectrum of the signal)."""
    if not np.array_equal(raw, np.arange(first, first + len(raw), dtype=float)):
        raise ValueError(f"payload is not points {first}..{first + len(raw) - 1}")
    spectrum = np.abs(np.fft.rfft(raw - raw.mean())) if len(raw) else np.zeros(1)
    return float(spectrum.max())


@dataclasses.dataclass
class ReaderReport:
    reads: int = 0
    points: int = 0
    payload_bytes: int = 0
    largest_payload: int = 0
    timeouts: int = 0


async def payload_reader(
    url: str, index: int, stop: anyio.Event, report: ReaderReport, count_timeouts: bool = False
) -> None:
    """One of the 16 other readers: a good-device connection of its own streaming at the rate
    that fills a 64 kB payload per period; every request has a 50 ms timeout (a timeout
    fails the scenario, or is counted with ``count_timeouts``)."""
    device = SimGoodDevice(f"reader{index}", SimAddress(url=url, timeout=SETUP_TIMEOUT))
    await device.start_stream(PAYLOAD_POINTS / READ_PERIOD)
    device.client.conn.timeout = READER_TIMEOUT  # connected: from now on, 50 ms per request
    try:
        while not stop.is_set():
            await anyio.sleep(READ_PERIOD)
            try:
                values = await device.read_points(PAYLOAD_POINTS)
            except CommTimeout:
                if not count_timeouts:
                    raise
                report.timeouts += 1
                await device.start_stream(PAYLOAD_POINTS / READ_PERIOD)
                report.points = 0
                continue
            await decode_in_thread(decode, values, report.points)
            report.reads += 1
            report.points += len(values)
            report.payload_bytes += values.nbytes
            report.largest_payload = max(report.largest_payload, values.nbytes)
    finally:
        with anyio.CancelScope(shield=True):
            device.client.conn.timeout = SETUP_TIMEOUT  # the teardown is not measured either
            await device.stop_stream()
            await device.client.close()


@dataclasses.dataclass
class ScenarioResult:
    sink: RecordingSink
    good_points: int
    bad_points: int
    good_overrun: int
    bad_end: tuple[int, int] | None
    bad_gaps: int
    bad_received: int
    readers: list[ReaderReport]


async def run_fairness_scenario(
    good_url: str,
    bad_url: str,
    duration: float = 3.0,
    monitor: LoopMonitor | None = None,
    count_timeouts: bool = False,
) -> ScenarioResult:
    """The chain reads the good device (hardware mode, buffered, in chunks) and the bad one
    (a packet stream) for ``duration`` seconds while 16 payload readers run beside it."""
    good = SimGoodDevice("good", SimAddress(url=good_url, timeout=GOOD_TIMEOUT))
    bad = SimBadDevice("bad", SimAddress(url=bad_url, timeout=1.0))
    good_points = int(GOOD_RATE * duration)
    bad_points = int(BAD_RATE * duration * 0.9)  # what its clock surely makes in `duration`
    chain = AcquisitionChain(readout_timeout=max(2.0, duration))
    timer = SoftwareTimerMaster(duration, npoints=1)
    good_slave = AcquirableSlave(
        good,
        trigger_type=TriggerType.HARDWARE,
        count_time=1.0 / GOOD_RATE,
        npoints=good_points,
        poll_interval=0.01,
    )
    bad_slave = PacketStreamSlave(bad, bad_points)
    chain.add(timer, good_slave)
    chain.add(timer, bad_slave)
    sink = subscribe(chain)
    reports = [ReaderReport() for _ in range(READERS)]
    stop_readers = anyio.Event()
    overrun = -1
    await warm_decode_threads()
    try:
        async with anyio.create_task_group() as tg:
            for i, report in enumerate(reports):
                tg.start_soon(payload_reader, good_url, i, stop_readers, report, count_timeouts)
            if monitor is not None:
                monitor.reset()
            await chain.run()
            overrun = await good.overruns()
            stop_readers.set()
    finally:
        with anyio.CancelScope(shield=True):
            await good.client.close()
            await bad.close()
    return ScenarioResult(
        sink=sink,
        good_points=good_points,
        bad_points=bad_points,
        good_overrun=overrun,
        bad_end=bad_slave.end_counts,
        bad_gaps=bad.gaps,
        bad_received=bad.received,
        readers=reports,
    )


def cpu_pressure() -> str:
    """The kernel's CPU pressure (PSI): how often runnable tasks waited for a core. Shown with
    a failure, it tells an overloaded machine from unfair code in this process."""
    try:
        with open("/proc/pressure/cpu") as f:
            return "CPU pressure: " + f.readline().strip()
    except OSError:
        return "CPU pressure: not available"


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_good_and_bad_devices_are_served_beside_16_payload_readers(
    sims: object, bad_device: object
) -> None:
    good_url = sims.url("good")  # type: ignore[attr-defined]
    bad_url = bad_device.url("bad")  # type: ignore[attr-defined]
    async with LoopMonitor(threshold=0.02, interval=0.002) as monitor:
        try:
            result = await run_fairness_scenario(good_url, bad_url, duration=2.0, monitor=monitor)
        except Exception as exc:  # a timeout: was this loop held (by what), or the machine?
            exc.add_note(f"{monitor.stats()}\n{cpu_pressure()}")
            raise
    # On failure, say whether this process's loop was held (unfair code, named) or not (the
    # machine was too loaded for the devices' own processes).
    loop = f"{monitor.stats()}\n{cpu_pressure()}"

    # The 16 readers never timed out (a timeout would have failed the task group) and did
    # real work: 64 kB payloads, all decoded and checked.
    for report in result.readers:
        assert report.reads >= 5, (report, loop)
        assert report.largest_payload == PAYLOAD_POINTS * 8
    # The good device: every point once, in order, no overrun.
    good_values = result.sink.contiguous_values("good:value")
    np.testing.assert_array_equal(good_values, np.arange(result.good_points, dtype=float))
    assert result.sink.ended["good:value"] == result.good_points
    assert result.good_overrun == 0, loop
    # The bad device: nothing dropped at its default rate, no gap in the sequence.
    assert result.bad_end is not None
    produced, dropped = result.bad_end
    assert dropped == 0, f"the bad device dropped {dropped} of {produced} packets\n{loop}"
    assert result.bad_gaps == 0, loop
    assert result.bad_received == produced
    seqs = result.sink.contiguous_values("bad:seq")
    np.testing.assert_array_equal(seqs, np.arange(result.bad_points))


async def test_a_reading_loop_error_names_the_device(sims: object) -> None:
    """The good device refuses a zero count time: the chain names it and the phase."""
    from blissng.acquisition import AcquisitionError

    good = SimGoodDevice("good", SimAddress(url=sims.url("good"), timeout=2.0))  # type: ignore[attr-defined]
    chain = AcquisitionChain()
    timer = SoftwareTimerMaster(0.1, npoints=1)
    chain.add(
        timer,
        AcquirableSlave(good, trigger_type=TriggerType.HARDWARE, count_time=0.0, npoints=10),
    )
    try:
        with pytest.raises(AcquisitionError) as info:
            await chain.run()
    finally:
        await good.client.close()
    assert (info.value.device, info.value.phase) == ("good", "prepare")
    assert "count time" in str(info.value)
