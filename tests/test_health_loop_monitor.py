"""The loop monitor catches blocking calls on the event loop and names them."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import subprocess
import sys
import time
from typing import Any

import anyio
import pytest

from blissng.health import LoopMonitor, current_monitor, expected_stall, loop_monitor, loop_stats

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
    """CPU-bound work (a payload decoded in pure Python) run where it must not be: ``seconds``
    of this thread's CPU time, however loaded the machine (of wall time, a thread kept off
    the CPU by other processes would be a stall of the machine, rightly blamed on no code)."""
    end = time.thread_time() + seconds
    total = 0
    while time.thread_time() < end:
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


async def test_an_idle_loop_is_not_woken_by_its_monitor() -> None:
    """A server at rest stays at rest: the monitor looks at the loop from its thread, it does
    not ping it (a ping every 10 ms was most of an idle server's CPU)."""
    loop = asyncio.get_running_loop()
    selector = loop._selector  # type: ignore[attr-defined]
    async with loop_monitor(threshold=0.05, interval=0.005) as monitor:
        watched = selector.select
        wakeups = 0

        def counting_select(timeout: float | None = None) -> Any:
            nonlocal wakeups
            wakeups += 1
            return watched(timeout)

        selector.select = counting_select
        try:
            await anyio.sleep(0.5)
        finally:
            selector.select = watched
        assert monitor.stats().count >= 20  # it kept looking meanwhile (every 5 ms)
    assert wakeups <= 3, f"the loop woke {wakeups} times in 0.5 s of sleep"


def burn_cpu(seconds: float) -> None:
    """``seconds`` of CPU time of this thread: short work, whatever the wall time it takes."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        sum(range(100))


HOG = """
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
print("go", flush=True)
end = time.monotonic() + 3
while time.monotonic() < end:
    pass
"""


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduler classes")
async def test_a_stall_of_a_loaded_machine_blames_no_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The loop thread runs 10 ms of work while another process holds its CPU: it stalls
    for much longer, but the code is not the cause, and the report says so (issue 12)."""
    caplog.set_level(logging.INFO, logger="blissng.health")
    cpu = max(os.sched_getaffinity(0))
    hog = subprocess.Popen([sys.executable, "-c", HOG, str(cpu)], stdout=subprocess.PIPE)
    try:
        assert hog.stdout is not None
        assert await anyio.to_thread.run_sync(hog.stdout.readline) == b"go\n"
        async with loop_monitor(threshold=0.05, interval=0.005) as monitor:
            await anyio.sleep(0.05)
            affinity = os.sched_getaffinity(0)
            # This thread, and only it, on the hog's CPU with the lowest priority there is.
            os.sched_setaffinity(0, {cpu})
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            try:
                burn_cpu(0.01)
            finally:
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
                os.sched_setaffinity(0, affinity)
    finally:
        hog.kill()
        hog.wait()
    stalls = monitor.stats().stalls
    assert stalls, "no stall: the hog did not take the CPU"
    worst = stalls[0]
    assert worst.duration > 0.1, worst
    assert worst.culprit is None, worst
    assert worst.machine, worst
    assert worst.waiting_cpu is not None and worst.waiting_cpu > 0.5
    assert monitor.stats().machine_stall_count >= 1
    assert "waiting for a CPU" in worst.describe() or "waited for a CPU" in worst.describe()
    records = [
        r for r in caplog.records if r.name == "blissng.health" and "burn_cpu" in r.getMessage()
    ]
    assert not records, "a machine's stall was blamed on the code it interrupted"
    warnings = [
        r for r in caplog.records if r.name == "blissng.health" and r.levelno >= logging.WARNING
    ]
    assert not warnings, [r.getMessage() for r in warnings]


async def test_a_stall_on_purpose_is_reported_with_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="blissng.health")
    async with loop_monitor(threshold=0.05, interval=0.005) as monitor:
        await anyio.sleep(0.02)
        with expected_stall("a test holding the loop"):
            hold_the_loop_with_sleep(0.2)
        await anyio.sleep(0.02)
        with expected_stall("short enough to go unreported"):
            pass
    (stall,) = monitor.stats().stalls
    assert stall.expected == "a test holding the loop" and stall.duration >= 0.15
    assert "on purpose: a test holding the loop" in stall.describe()
    logged = [r for r in caplog.records if r.name == "blissng.health"]
    assert [r.levelno for r in logged] == [logging.INFO], [r.getMessage() for r in logged]
    assert not monitor._expected  # nothing kept for the iteration that did not stall
