"""The loop monitor catches blocking calls on the event loop and names them."""

from __future__ import annotations

import json
import logging
import os
import select
import time

import anyio
import pytest

from blissng.health import LoopMonitor, current_monitor, loop_monitor, loop_stats

pytestmark = pytest.mark.anyio


def hold_the_loop_with_sleep(seconds: float) -> None:
    time.sleep(seconds)  # the bug the monitor must find: a blocking sleep on the loop


async def test_a_sleep_on_the_loop_is_caught_and_named(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="blissng.health")
    async with loop_monitor(threshold=0.05, interval=0.005) as monitor:
        await anyio.sleep(0.05)  # a few normal pings first
        hold_the_loop_with_sleep(0.3)
    stats = monitor.stats()
    assert stats.stall_count >= 1
    worst = stats.stalls[0]
    assert worst.duration >= 0.2
    assert worst.culprit is not None
    assert worst.culprit.function == "hold_the_loop_with_sleep"
    assert worst.culprit.filename == __file__
    assert "time.sleep(seconds)" in worst.culprit.line
    # the whole stack leads to it from this test
    assert any(f.function == "test_a_sleep_on_the_loop_is_caught_and_named" for f in worst.stack)
    assert stats.max >= worst.duration and stats.count > 1
    assert stats.p50 < 0.05
    logged = [r.getMessage() for r in caplog.records if r.name == "blissng.health"]
    assert any("hold_the_loop_with_sleep" in m and "stalled for" in m for m in logged)


async def test_a_slow_statvfs_on_the_loop_is_caught_and_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_statvfs = os.statvfs

    def slow_statvfs(path: str) -> os.statvfs_result:
        """What os.statvfs does on a hung NFS mount: it takes seconds."""
        time.sleep(0.25)
        return real_statvfs(path)

    monkeypatch.setattr(os, "statvfs", slow_statvfs)

    def free_space(path: str) -> int:  # a careless free-space check, run on the loop
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize

    async with loop_monitor(threshold=0.05, interval=0.005) as monitor:
        assert free_space("/") > 0
    stalls = monitor.stats().stalls
    assert stalls, "the blocking statvfs was not detected"
    assert stalls[0].culprit is not None and stalls[0].culprit.function == "slow_statvfs"
    # free_space called it (a console's time.sleep wrapper may sit inside slow_statvfs)
    names = [f.function for f in stalls[0].stack]
    assert names[names.index("slow_statvfs") - 1] == "free_space"
    assert "slow_statvfs" in stalls[0].describe()


async def test_the_same_call_in_a_thread_is_not_a_stall() -> None:
    async with loop_monitor(threshold=0.1, interval=0.005) as monitor:
        await anyio.to_thread.run_sync(hold_the_loop_with_sleep, 0.3)
    stats = monitor.stats()
    assert not any(
        s.culprit is not None and s.culprit.function == "hold_the_loop_with_sleep"
        for s in stats.stalls
    )
    assert stats.count >= 10  # it kept pinging through the 300 ms


async def test_stats_are_bounded_and_keep_the_worst() -> None:
    monitor = LoopMonitor(threshold=0.03, interval=0.002, keep_samples=50, keep_stalls=2)
    async with monitor:
        for seconds in (0.06, 0.2, 0.12):
            hold_the_loop_with_sleep(seconds)
            await anyio.sleep(0.02)  # let the ping of this stall be answered
        await anyio.sleep(0.2)
    stats = monitor.stats()
    assert stats.stall_count >= 3
    assert len(stats.stalls) == 2
    assert stats.stalls[0].duration >= stats.stalls[1].duration >= 0.1
    assert len(monitor._samples) <= 50
    as_json = json.loads(json.dumps(stats.to_dict()))
    assert as_json["stalls"][0]["function"] == "hold_the_loop_with_sleep"
    assert "hold_the_loop_with_sleep" in str(stats)
    monitor.reset()
    assert monitor.stats().count == 0 and monitor.stats().stalls == ()


async def test_loop_stats_reports_the_running_monitor() -> None:
    async with loop_monitor(threshold=0.5, interval=0.002) as monitor:
        assert current_monitor() is monitor and monitor.running
        await anyio.sleep(0.05)
        stats = loop_stats()
        assert stats is not None and stats.count >= 1
        assert 0 <= stats.p50 <= stats.p99 <= stats.max
    assert not monitor.running


def test_start_outside_the_loop_is_refused_clearly() -> None:
    with pytest.raises(RuntimeError, match="must be called from the asyncio event loop"):
        LoopMonitor().start()
    with pytest.raises(ValueError, match="threshold and interval must be > 0"):
        LoopMonitor(threshold=0)


def decode_on_the_loop(seconds: float) -> int:
    """CPU-bound work (a payload decoded in pure Python) run where it must not be."""
    end = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < end:
        total += sum(range(100))
    return total


async def test_cpu_bound_work_on_the_loop_is_caught_and_named() -> None:
    async with loop_monitor(threshold=0.05, interval=0.005) as monitor:
        await anyio.sleep(0.02)
        decode_on_the_loop(0.3)
    stalls = monitor.stats().stalls
    assert stalls and stalls[0].duration >= 0.2
    assert stalls[0].culprit is not None
    assert stalls[0].culprit.function == "decode_on_the_loop"


async def test_a_python_replacement_of_time_sleep_is_seen_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A console makes time.sleep interruptible for the whole process (blissng.shell.interrupt):
    # the culprit stays the code that called time.sleep, not the replacement.

    def routed_sleep(seconds: float) -> None:
        select.select([], [], [], seconds)  # blocks like time.sleep, whatever time.sleep is now

    monkeypatch.setattr(time, "sleep", routed_sleep)
    async with loop_monitor(threshold=0.05, interval=0.005) as monitor:
        await anyio.sleep(0.05)
        hold_the_loop_with_sleep(0.3)
    worst = monitor.stats().stalls[0]
    assert worst.culprit is not None
    assert worst.culprit.function == "hold_the_loop_with_sleep"
    assert any(f.function == "routed_sleep" for f in worst.stack)
