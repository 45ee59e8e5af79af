"""run_in_thread(): the one helper for blocking calls (comm's, the file systems', the rest)."""

from __future__ import annotations

import threading

import anyio
import anyio.to_thread
import pytest

from blissng.threads import CallTimeout, ResourceBusy, run_in_thread, stuck_calls

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


async def test_a_call_abandoned_before_its_thread_started_leaves_its_resource_free() -> None:
    """A timeout that strikes while the call still waits for a worker thread: the call never
    runs, and its resource must not be marked stuck (nothing would ever clear the mark)."""
    default = anyio.to_thread.current_default_thread_limiter()
    tokens = default.total_tokens
    default.total_tokens = 1
    held, release = anyio.Event(), anyio.Event()
    ran = threading.Event()

    async def hold_every_worker_thread() -> None:
        async with default:
            held.set()
            await release.wait()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold_every_worker_thread)
            await held.wait()
            with pytest.raises(CallTimeout):
                await run_in_thread(ran.set, resource="never_started_fs", timeout=0.05)
            release.set()
    finally:
        default.total_tokens = tokens
    assert "never_started_fs" not in stuck_calls()
    assert await run_in_thread(len, "ab", resource="never_started_fs", timeout=5) == 2
    assert not ran.is_set()


async def test_an_abandoned_call_makes_its_resource_fail_fast_until_it_returns() -> None:
    release, returned = threading.Event(), threading.Event()

    def stuck() -> None:
        try:
            release.wait(30)
        finally:
            returned.set()

    with anyio.move_on_after(0.05):
        await run_in_thread(stuck, resource="stuck_fs", abandon_on_cancel=True)
    with pytest.raises(ResourceBusy, match="still running"):
        await run_in_thread(len, "x", resource="stuck_fs")
    release.set()
    await anyio.to_thread.run_sync(returned.wait)  # the test's own wait, not product code
    with anyio.fail_after(5):  # the thread's last statement runs just after the event
        while "stuck_fs" in stuck_calls():
            await anyio.sleep(0.001)
    assert await run_in_thread(len, "xy", resource="stuck_fs") == 2


async def test_without_a_resource_a_cancellation_waits_for_the_thread() -> None:
    """anyio's default kept: a call that is not abandoned ends with its thread."""
    started, release, returned = threading.Event(), threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(30)
        returned.set()

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_in_thread, slow)
            await anyio.to_thread.run_sync(started.wait, 10)  # the test's own wait
            scope.cancel()
            release.set()
    assert returned.is_set()
