"""blocking(): worker threads, one call at a time per device, timeouts and fail-fast."""

from __future__ import annotations

import functools
import threading
import time

import anyio
import anyio.to_thread
import pytest

from blissng.comm import CommTimeout, DeviceBusy, blocking, stuck_calls

pytestmark = pytest.mark.anyio


class Driver:
    """A blocking 'vendor driver' whose calls the test controls with events."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.release = threading.Event()
        self.returned = threading.Event()
        self.active = 0
        self.max_active = 0
        self.calls = 0
        self._lock = threading.Lock()

    def read(self, value: int) -> int:
        with self._lock:
            self.active += 1
            self.calls += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.release.wait(30)
            return value * 2
        finally:
            with self._lock:
                self.active -= 1
            self.returned.set()


async def test_blocking_runs_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    released = threading.Event()

    async def ticker() -> None:
        # Only a loop that keeps running while the call blocks can release it.
        for _ in range(5):
            await anyio.sleep(0.01)
        released.set()

    def blocked_until_the_loop_releases_it() -> tuple[bool, int]:
        return released.wait(30), threading.get_ident()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        was_released, thread = await blocking(blocked_until_the_loop_releases_it, device="d1")
    assert thread != loop_thread
    assert was_released


async def test_one_call_at_a_time_per_device_and_devices_in_parallel() -> None:
    a, b = Driver("drv_a"), Driver("drv_b")
    results: list[int] = []

    async def call(driver: Driver, value: int) -> None:
        results.append(await blocking(driver.read, value, device=driver, timeout=10))

    async with anyio.create_task_group() as tg:
        for value in range(4):
            tg.start_soon(call, a, value)
            tg.start_soon(call, b, value)
        # Wait until both devices are inside their driver, then let them go.
        with anyio.fail_after(5):
            while a.active < 1 or b.active < 1:
                await anyio.sleep(0.005)
        a.release.set()
        b.release.set()
    assert sorted(results) == sorted([v * 2 for v in range(4)] * 2)
    assert a.max_active == 1 and b.max_active == 1  # never entered twice at once
    assert a.calls == 4 and b.calls == 4


async def test_timeout_names_device_call_and_time_then_fails_fast_until_thread_returns() -> None:
    driver = Driver("stuck_drv")
    start = time.monotonic()
    with pytest.raises(CommTimeout) as info:
        await blocking(driver.read, 7, device=driver, timeout=0.2)
    assert 0.2 <= time.monotonic() - start < 0.2 * 5
    message = str(info.value)
    assert "stuck_drv" in message and "read(7)" in message and "0.2" in message
    assert "stuck_drv" in stuck_calls()

    # The thread still runs: the device fails fast, it is not entered a second time.
    start = time.monotonic()
    with pytest.raises(DeviceBusy, match=r"stuck_drv.*read\(7\).*still running"):
        await blocking(driver.read, 8, device=driver, timeout=5)
    assert time.monotonic() - start < 0.1
    assert driver.calls == 1
    # Other devices are not affected.
    assert await blocking(functools.partial(sum, [1, 2]), device="other_drv", timeout=5) == 3

    driver.release.set()
    await anyio.to_thread.run_sync(driver.returned.wait)
    with anyio.fail_after(5):  # the thread's last statement runs just after the event
        while "stuck_drv" in stuck_calls():
            await anyio.sleep(0.001)
    assert await blocking(driver.read, 9, device=driver, timeout=5) == 18
    assert driver.max_active == 1


async def test_callers_queued_behind_a_stuck_call_fail_fast_too() -> None:
    driver = Driver("queued_drv")
    outcomes: list[str] = []

    async def caller(timeout: float) -> None:
        try:
            await blocking(driver.read, 1, device="queued_drv", timeout=timeout)
            outcomes.append("ok")
        except DeviceBusy:
            outcomes.append("busy")
        except CommTimeout:
            outcomes.append("timeout")

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller, 0.2)
        with anyio.fail_after(5):
            while driver.active < 1:
                await anyio.sleep(0.005)
        tg.start_soon(caller, 5.0)  # waits for the device, then finds it stuck
    assert outcomes == ["timeout", "busy"]
    assert driver.calls == 1
    driver.release.set()
    await anyio.to_thread.run_sync(driver.returned.wait)


async def test_device_none_uses_a_shared_limiter_and_still_times_out() -> None:
    release = threading.Event()
    assert await blocking(len, "abc") == 3
    with pytest.raises(CommTimeout, match="blocking call"):
        await blocking(release.wait, 10, timeout=0.1)
    # No fail-fast without a device: unrelated file-system queries go on.
    assert await blocking(len, "abcd", timeout=5) == 4
    release.set()
